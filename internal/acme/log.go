package acme

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	legolog "github.com/go-acme/lego/v4/log"
)

// lego logs through one process-wide logger. It is pointed once at
// legoLogger, which forwards to the slog.Logger of the latest Client.
var (
	legoLogOnce sync.Once
	legoSlog    atomic.Pointer[slog.Logger]
)

func setLegoLogger(l *slog.Logger) {
	legoSlog.Store(l)
	legoLogOnce.Do(func() { legolog.Logger = legoLogger{} })
}

// legoLogger implements lego's log.StdLogger. lego's step-by-step "[INFO] "
// lines are debug messages here (certpush logs the order and the result
// itself); "[WARN] " lines stay warnings; Fatal lines are logged as errors
// and never end the process.
type legoLogger struct{}

func (legoLogger) emit(level slog.Level, msg string) {
	l := legoSlog.Load()
	if l == nil {
		return
	}
	msg = strings.TrimRight(msg, "\n")
	switch {
	case strings.HasPrefix(msg, "[INFO] "):
		level, msg = slog.LevelDebug, msg[len("[INFO] "):]
	case strings.HasPrefix(msg, "[WARN] "):
		level, msg = slog.LevelWarn, msg[len("[WARN] "):]
	}
	l.Log(context.Background(), level, msg, "component", "lego")
}

func (g legoLogger) Fatal(args ...any)   { g.emit(slog.LevelError, fmt.Sprint(args...)) }
func (g legoLogger) Fatalln(args ...any) { g.emit(slog.LevelError, fmt.Sprintln(args...)) }
func (g legoLogger) Fatalf(format string, args ...any) {
	g.emit(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g legoLogger) Print(args ...any)   { g.emit(slog.LevelInfo, fmt.Sprint(args...)) }
func (g legoLogger) Println(args ...any) { g.emit(slog.LevelInfo, fmt.Sprintln(args...)) }
func (g legoLogger) Printf(format string, args ...any) {
	g.emit(slog.LevelInfo, fmt.Sprintf(format, args...))
}
