package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// outputTail is how much of a command's output is kept for the error.
const outputTail = 2048

// command runs argv without a shell, with the configured timeout, the
// process environment plus env, and no stdin. Its process group is killed
// when the timeout or ctx ends it. The error holds the tail of its output.
func (in *Installer) command(ctx context.Context, what string, argv, env []string) error {
	timeout := in.Config.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(cmd.Environ(), env...)
	out := &tail{max: outputTail}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	l := in.log().With("command", what, "argv", strings.Join(argv, " "), "duration", time.Since(start).Round(time.Millisecond))
	if err == nil {
		l.Debug("command done", "output", out.String())
		return nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	l.Debug("command failed", "error", err, "output", out.String())
	msg := strings.TrimSpace(out.String())
	if msg == "" {
		return fmt.Errorf("%s: %v", strings.Join(argv, " "), err)
	}
	return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, msg)
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf bytes.Buffer
}

func (t *tail) Write(b []byte) (int, error) {
	t.buf.Write(b)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(b), nil
}

func (t *tail) String() string { return t.buf.String() }
