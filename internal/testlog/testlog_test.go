package testlog

import (
	"log/slog"
	"testing"
)

func TestLogger(t *testing.T) {
	var log *slog.Logger
	t.Run("inner", func(t *testing.T) {
		log = Logger(t)
		log.Debug("debug line", "key", "value")
		AtLevel(t, slog.LevelWarn).Info("not shown")
	})
	// The inner test has ended: writing now must not panic.
	log.Info("after the end")
}
