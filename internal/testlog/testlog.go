// Package testlog sends a test's slog output to the test's own log.
package testlog

import (
	"log/slog"
	"sync"
	"testing"
)

// Logger returns a logger at debug level that writes to t.Output(), so
// its lines appear with the test that made them. Lines logged after the
// test has ended (by goroutines it left behind) are dropped.
func Logger(t testing.TB) *slog.Logger { return AtLevel(t, slog.LevelDebug) }

// AtLevel is Logger with another minimum level.
func AtLevel(t testing.TB, level slog.Leveler) *slog.Logger {
	w := &writer{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.t.Output().Write(p)
}
