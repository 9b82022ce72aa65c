package acme

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/testacme"
	"github.com/certpush/certpush/internal/testproc"
)

const nginxBin = "/usr/sbin/nginx"

// The nginx location documented for standalone mode forwards the CA's
// request to the challenge server, which sees the original Host.
func TestHTTP01StandaloneBehindNginx(t *testing.T) {
	if _, err := os.Stat(nginxBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	webPort, challPort := testproc.MustFreePort(t), testproc.MustFreePort(t)
	srv := startPebble(t, testacme.Options{HTTPPort: webPort})

	prefix := t.TempDir()
	conf := fmt.Sprintf(`pid %[1]s/nginx.pid;
worker_processes 1;
events { worker_connections 64; }
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		location / { return 200 "site\n"; }
		location /.well-known/acme-challenge/ {
			proxy_pass http://127.0.0.1:%[3]d;
			proxy_set_header Host $host;
		}
	}
}
`, prefix, webPort, challPort)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginxBin, "-p", prefix, "-e", filepath.Join(prefix, "error.log"), "-c", confPath, "-g", "daemon off;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if out, err := exec.Command(nginxBin, "-t", "-p", prefix, "-e", filepath.Join(prefix, "error.log"), "-c", confPath).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v: %s", err, out)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", webPort))
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	c := newClient(t, srv, t.TempDir())
	domains := []string{"lb.example.test"}
	cert := obtain(t, c, Request{
		Domains: domains,
		Challenge: Challenge{
			Type:    HTTP01,
			Mode:    ModeStandalone,
			Address: net.JoinHostPort("127.0.0.1", fmt.Sprint(challPort)),
		},
	})
	validate(t, srv, cert, domains)
	log, err := os.ReadFile(filepath.Join(prefix, "access.log"))
	if err != nil || !strings.Contains(string(log), "/.well-known/acme-challenge/") {
		t.Errorf("nginx did not pass the challenge on: %v\n%s", err, log)
	}
}
