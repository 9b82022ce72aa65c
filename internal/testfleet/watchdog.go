package testfleet

import (
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
)

// watchdogScript keeps the process groups it is told about ("add PGID",
// "del PGID" lines on stdin) and kills them all when stdin closes, which
// happens when the fleet closes or when this process dies. nginx workers
// outlive a killed master; this is what takes them down with it.
const watchdogScript = `groups=" "
while read op g; do
	case "$op" in
	add) groups="$groups$g " ;;
	del) case "$groups" in *" $g "*) groups="${groups%% $g *} ${groups#* $g }" ;; esac ;;
	esac
done
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
exit 0
`

// watchdog is a shell process that outlives this one just long enough to
// kill the fleet's process groups.
type watchdog struct {
	mu  sync.Mutex
	in  io.WriteCloser
	cmd *exec.Cmd
}

func startWatchdog() (*watchdog, error) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	return &watchdog{in: in, cmd: cmd}, nil
}

func (w *watchdog) send(op string, pgid int) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.in != nil {
		fmt.Fprintf(w.in, "%s %d\n", op, pgid)
	}
}

// close ends the watchdog, which kills whatever groups are still listed.
func (w *watchdog) close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	in := w.in
	w.in = nil
	w.mu.Unlock()
	if in == nil {
		return nil
	}
	in.Close()
	if err := w.cmd.Wait(); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	return nil
}
