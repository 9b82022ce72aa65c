package testfleet

import (
	"os"
	"os/exec"
)

// TB is the part of testing.TB that Require uses.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// Require checks that every program of bins can be run (a name on PATH or
// a path). A missing one skips the test, or fails it when the environment
// variable CI is "true", so that CI never passes by skipping.
func Require(t TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			msg := "testfleet: " + b + " is not installed: " + err.Error()
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}
