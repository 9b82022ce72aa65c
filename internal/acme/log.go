package acme

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	legolog "github.com/go-acme/lego/v5/log"
)

// lego logs through one process-wide slog.Logger. It is pointed once at
// legoHandler, which forwards to the slog.Logger of the latest Client.
var (
	legoLogOnce sync.Once
	legoSlog    atomic.Pointer[slog.Logger]
)

func setLegoLogger(l *slog.Logger) {
	legoSlog.Store(l)
	legoLogOnce.Do(func() { legolog.SetDefault(slog.New(legoHandler{})) })
}

// legoHandler is the slog.Handler of lego's logger. lego's step-by-step
// info lines are debug messages here (certpush logs the order and the
// result itself); warnings and errors keep their level. Each record gets
// component=lego.
type legoHandler struct {
	attrs []slog.Attr
}

func legoLevel(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}

func (h legoHandler) Enabled(ctx context.Context, level slog.Level) bool {
	l := legoSlog.Load()
	return l != nil && l.Enabled(ctx, legoLevel(level))
}

func (h legoHandler) Handle(ctx context.Context, r slog.Record) error {
	l := legoSlog.Load()
	if l == nil {
		return nil
	}
	out := slog.NewRecord(r.Time, legoLevel(r.Level), r.Message, r.PC)
	out.AddAttrs(slog.String("component", "lego"))
	out.AddAttrs(h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	if !l.Handler().Enabled(ctx, out.Level) {
		return nil
	}
	return l.Handler().Handle(ctx, out)
}

func (h legoHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return legoHandler{attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

// WithGroup keeps the group's attributes flat: lego's lines are few.
func (h legoHandler) WithGroup(string) slog.Handler { return h }
