package main

import (
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/certpush/certpush/internal/push"
	"github.com/certpush/certpush/internal/verify"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// progress returns a push.Options.Progress function that shows hosts done
// and failures so far on stderr, when stderr is a terminal; nil otherwise
// (cron stays quiet).
func (e *env) progress(cert string) func(done, total int, r push.Result) {
	if !isTerminal(e.stderr) {
		return nil
	}
	failed := 0
	return func(done, total int, r push.Result) {
		if !r.OK() {
			failed++
		}
		e.progressShown = true
		fmt.Fprintf(e.stderr, "\r\x1b[K%s: %d/%d hosts done, %d failed", cert, done, total, failed)
	}
}

// surveyProgress is progress for status: endpoints done and not aligned.
func (e *env) surveyProgress() func(done, total int, r verify.Report) {
	if !isTerminal(e.stderr) {
		return nil
	}
	bad := 0
	return func(done, total int, r verify.Report) {
		if r.State != verify.Aligned {
			bad++
		}
		e.progressShown = true
		fmt.Fprintf(e.stderr, "\r\x1b[K%d/%d endpoints checked, %d not aligned", done, total, bad)
	}
}

// progressDone ends a progress line.
func (e *env) progressDone() {
	if e.progressShown {
		fmt.Fprint(e.stderr, "\r\x1b[K")
		e.progressShown = false
	}
}
