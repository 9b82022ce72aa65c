package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

func TestProgressOnlyOnATerminal(t *testing.T) {
	w := newWorld(t, 2)
	w.importNew()

	master, tty := openPTY(t)
	seen := make(chan string)
	go func() {
		var b bytes.Buffer
		io.Copy(&b, master) // ends when the terminal is closed
		seen <- b.String()
	}()
	var stdout bytes.Buffer
	code := run(context.Background(), []string{"--config", w.config, "push"}, &stdout, tty)
	tty.Close()
	onTTY := <-seen
	if code != 0 {
		t.Fatalf("push exited %d: %s", code, onTTY)
	}
	if !strings.Contains(onTTY, "2/2 hosts done, 0 failed") {
		t.Errorf("no progress on the terminal:\n%q", onTTY)
	}

	// From cron (no terminal), --quiet: nothing at all when all is well.
	var out, errb bytes.Buffer
	code = run(context.Background(), []string{"--config", w.config, "push", "--quiet", "--force"}, &out, &errb)
	if code != 0 || out.Len() != 0 || errb.Len() != 0 {
		t.Errorf("quiet push: %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}
