// Package teststore starts a real S3-compatible server for tests:
// versitygw with its posix backend, on a loopback port, with its own
// access keys, stopped by pid when the test ends.
package teststore

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/store"
	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/internal/testproc"
)

// Access keys of the test server; tests pass them to clients through
// the standard AWS environment variables.
const (
	AccessKey = "certpush-test"
	SecretKey = "certpush-test-secret"
	Bucket    = "certs"
)

// Server is a running versitygw.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Dir      string // the posix backend's directory (buckets are its subdirectories)
	proc     *testproc.Proc
	argv     []string
	log      string
	addr     string
}

// Binary finds versitygw: on PATH, else in $(go env GOPATH)/bin where
// scripts/deps.sh installs it.
func Binary() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	return filepath.Join(gopath, "bin", "versitygw")
}

// Start starts versitygw for t with one bucket (Bucket) and sets the
// AWS_* environment variables for the test, so the standard credential
// chain finds the server's keys. A missing versitygw skips the test, or
// fails it under CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	testfleet.Require(t, bin)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, Bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	port := testproc.MustFreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{Endpoint: "http://" + addr, Dir: dir, argv: []string{bin, "--port", addr, "posix", dir},
		log: filepath.Join(t.TempDir(), "versitygw.log"), addr: addr}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	t.Setenv("AWS_ACCESS_KEY_ID", AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-aws-credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	// The server is plain HTTP on loopback: no CA bundle of the machine.
	t.Setenv("AWS_CA_BUNDLE", "")
	return s
}

func (s *Server) wait(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.proc.Done():
			return fmt.Errorf("versitygw exited: %v", s.proc.Err())
		default:
		}
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("versitygw did not listen on %s", addr)
}

func (s *Server) start() error {
	p, err := testproc.Start("versitygw", s.argv, s.log, testproc.Options{
		Env: []string{"ROOT_ACCESS_KEY=" + AccessKey, "ROOT_SECRET_KEY=" + SecretKey, "HOME=" + s.Dir},
	})
	if err != nil {
		return err
	}
	s.proc = p
	if err := s.wait(s.addr); err != nil {
		_ = p.Stop()
		return fmt.Errorf("%v\n%s", err, testproc.Tail(p.Log(), 20))
	}
	return nil
}

// Restart starts the server again after Stop, on the same address with
// the same data. It is a no-op when the server runs.
func (s *Server) Restart() error {
	if !s.proc.Exited() {
		return nil
	}
	return s.start()
}

// Stop stops the server (idempotent).
func (s *Server) Stop() error { return s.proc.Stop() }

// Pid is the server's process id.
func (s *Server) Pid() int { return s.proc.Pid() }

// Config is a store configuration for prefix in the test bucket.
func (s *Server) Config(prefix string) *store.Config {
	return &store.Config{URL: "s3://" + Bucket + "/" + prefix, Endpoint: s.Endpoint, Region: "us-east-1", PathStyle: true}
}

// Open opens the store for prefix.
func (s *Server) Open(t testing.TB, prefix string) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), s.Config(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return st
}
