package testlb

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/testproc"
)

// NginxBinary is the nginx the tests start.
const NginxBinary = "/usr/sbin/nginx"

// Nginx is one running nginx serving TLS from a certificate directory
// (fullchain.pem, privkey.pem), e.g. certnode's live/<name>.
type Nginx struct {
	Prefix string
	Config string
	Port   int
	proc   *testproc.Proc
}

// Addr is nginx's TLS address.
func (n *Nginx) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// StartNginx starts nginx (master and one worker) serving certDir's
// fullchain.pem and privkey.pem, and waits until it accepts connections.
func StartNginx(t testing.TB, certDir string) *Nginx {
	t.Helper()
	if _, err := os.Stat(NginxBinary); err != nil {
		t.Skipf("%s not installed: %v", NginxBinary, err)
	}
	n := &Nginx{Prefix: t.TempDir()}
	n.Config = filepath.Join(n.Prefix, "nginx.conf")
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		n.Port = testproc.MustFreePort(t)
		if err = n.start(certDir); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start nginx: %v\n%s", err, testproc.Tail(filepath.Join(n.Prefix, "error.log"), 20))
	}
	t.Cleanup(func() { n.proc.Stop() })
	return n
}

func (n *Nginx) start(certDir string) error {
	p := n.Prefix
	conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body_temp;
    proxy_temp_path %[1]s/proxy_temp;
    fastcgi_temp_path %[1]s/fastcgi_temp;
    uwsgi_temp_path %[1]s/uwsgi_temp;
    scgi_temp_path %[1]s/scgi_temp;
    server {
        listen 127.0.0.1:%[2]d ssl default_server;
        ssl_certificate %[3]s/fullchain.pem;
        ssl_certificate_key %[3]s/privkey.pem;
        location / { return 200 "ok\n"; }
    }
}
`, p, n.Port, certDir)
	if err := os.WriteFile(n.Config, []byte(conf), 0o644); err != nil {
		return err
	}
	proc, err := testproc.Start("nginx", append(n.args(), "-g", "daemon off;"), filepath.Join(p, "stderr.log"), testproc.Options{Tree: true})
	if err != nil {
		return err
	}
	n.proc = proc
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if proc.Exited() {
			return fmt.Errorf("nginx exited: %v", proc.Err())
		}
		if c, err := net.DialTimeout("tcp", n.Addr(), time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	proc.Stop()
	return errors.New("nginx did not come up within 10s")
}

func (n *Nginx) args() []string {
	return []string{NginxBinary, "-p", n.Prefix, "-e", filepath.Join(n.Prefix, "error.log"), "-c", n.Config}
}

// ReloadArgv is the argv that reloads this nginx (nginx -s reload).
func (n *Nginx) ReloadArgv() []string { return append(n.args(), "-s", "reload") }

// Reload runs nginx -s reload.
func (n *Nginx) Reload() error {
	out, err := exec.Command(n.ReloadArgv()[0], n.ReloadArgv()[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx -s reload: %v: %s", err, out)
	}
	return nil
}
