package faults

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/devca"
)

// TestKilledCertnode kills certnode with SIGKILL, during a real push, at
// each step after the bundle was verified: before the live link switch
// (while the version directory is written), during the config test,
// during the reload, and after the reload before the TLS check. The host
// must keep serving a certificate with its key, and the next push must
// finish the install (or roll it back) and converge.
func TestKilledCertnode(t *testing.T) {
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	marks := filepath.Join(w.fleet.Dir, "faults")
	// block stops the script at a step while marks/block.<step> exists,
	// after leaving certnode's pid in marks/at.<step>.
	block := func(step string) string {
		return fmt.Sprintf(`if [ -e %[1]s/block.%[2]s ]; then echo "$PPID $$" > %[1]s/at.%[2]s.tmp; mv %[1]s/at.%[2]s.tmp %[1]s/at.%[2]s; exec sleep 600; fi
`, marks, step)
	}
	test := w.writeScript("test.sh", block("test")+"exec "+shellQuote(h.NginxTest)+"\n")
	reload := w.writeScript("reload.sh", block("reload")+shellQuote(h.NginxReload)+" || exit 1\n"+block("reloaded"))
	w.writeNodeConfig(h, "", nodeDefaults{Test: []string{test}, Reload: []string{reload}}, nil)

	fps := []string{}
	for _, step := range []string{"stage", "test", "reload", "reloaded"} {
		t.Run(step, func(t *testing.T) {
			w.t = t
			fp := w.importNew(devca.Leaf{})
			fps = append(fps, fp)
			pending := filepath.Join(h.Root, "live", "."+certName+".pending")
			done := make(chan struct{})
			var code int
			if step == "stage" {
				// Kill as soon as the version directory is being written.
				stop := watchCreate(t, filepath.Join(h.Root, "archive", certName), ".tmp-", func() {
					for _, pid := range certnodeRunning(h) {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				})
				go func() { code, _ = w.push(); close(done) }()
				<-done
				stop()
			} else {
				flag := filepath.Join(marks, "block."+step)
				if err := os.WriteFile(flag, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				go func() { code, _ = w.push(); close(done) }()
				at := filepath.Join(marks, "at."+step)
				poll(t, 60*time.Second, "certnode to reach "+step, func() bool { _, err := os.Stat(at); return err == nil })
				f := strings.Fields(mustRead(t, at))
				certnodePID, _ := strconv.Atoi(f[0])
				scriptPID, _ := strconv.Atoi(f[1])
				if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", certnodePID)); filepath.Base(exe) != "certnode" {
					t.Fatalf("pid %d is %q, not certnode", certnodePID, exe)
				}
				if err := syscall.Kill(certnodePID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				syscall.Kill(-scriptPID, syscall.SIGKILL)
				os.Remove(flag)
				os.Remove(at)
				<-done
				if _, err := os.Stat(pending); err != nil {
					t.Errorf("no install record after a kill at %s: %v", step, err)
				}
			}
			if code != 1 {
				t.Errorf("push with certnode killed exited %d, want 1", code)
			}
			waitIdle(t, h)
			live, _ := os.Readlink(filepath.Join(h.Root, "live", certName))
			t.Logf("killed at %s: live -> %s", step, live)
			// Right after the kill: a certificate with its key is served.
			// live and nginx may disagree until the next run.
			w.checkServing(fps)
			w.converge(fp)
		})
	}
}

// checkServing asserts only that every host completes a TLS handshake
// (so its key matches the certificate it serves) with an allowed
// certificate, and that nothing secret leaked.
func (w *world) checkServing(allowed []string) {
	w.t.Helper()
	for _, h := range w.fleet.Hosts {
		served, err := h.ServedFingerprint(context.Background(), "www.example.test")
		if err != nil {
			w.t.Errorf("%s: no TLS handshake: %v", h.Name, err)
			continue
		}
		ok := served == h.BootstrapFingerprint
		for _, a := range allowed {
			ok = ok || served == a
		}
		if !ok {
			w.t.Errorf("%s serves %.16s, not an allowed certificate", h.Name, served)
		}
		w.checkArchive(h, false)
	}
	w.checkSecrets()
}

// watchCreate calls fn once when an entry whose name starts with prefix
// is created in dir (inotify). The returned function stops watching.
func watchCreate(t *testing.T, dir, prefix string, fn func()) func() {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer syscall.Close(fd)
		buf := make([]byte, 4096)
		for {
			n, err := syscall.Read(fd, buf)
			if err == syscall.EAGAIN {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				continue
			}
			if err != nil {
				return
			}
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				l := int(binary.LittleEndian.Uint32(buf[off+12:]))
				name := strings.TrimRight(string(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+l]), "\x00")
				off += syscall.SizeofInotifyEvent + l
				if strings.HasPrefix(name, prefix) {
					fn()
					return
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}
