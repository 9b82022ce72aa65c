package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/teststore"
)

// pullWorld is a fleet whose nodes pull from a versitygw store that
// certpush publishes to.
type pullWorld struct {
	*world
	srv *teststore.Server
}

func newPullWorld(t *testing.T, hosts int) *pullWorld {
	t.Helper()
	w := &pullWorld{world: newWorld(t, hosts), srv: teststore.Start(t)}
	sc := w.srv.Config("fleet")
	var recipients []string
	for _, h := range w.fleet.Hosts {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(h.Dir, "identity.age")
		if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, w.fleet.UID, w.fleet.GID); err != nil {
			t.Fatal(err)
		}
		recipients = append(recipients, id.Recipient().String())
		appendFile(t, h.CertnodeConfig, fmt.Sprintf("store:\n  url: %s\n  endpoint: %s\n  region: us-east-1\n  path_style: true\n  identity: %s\n  node_id: %s\n",
			sc.URL, sc.Endpoint, path, h.Name))
	}
	appendFile(t, w.config, fmt.Sprintf("store:\n  url: %s\n  endpoint: %s\n  region: us-east-1\n  path_style: true\n  recipients: [%s]\n",
		sc.URL, sc.Endpoint, strings.Join(recipients, ", ")))
	return w
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// certnode runs the node's certnode as the fleet's account (which runs
// nginx), with the test server's credentials in the standard AWS
// environment variables.
func (w *pullWorld) certnode(i int, args ...string) (int, string, string) {
	w.t.Helper()
	h := w.fleet.Hosts[i]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.fleet.Certnode, append([]string{"--config", h.CertnodeConfig}, args...)...)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + h.Dir,
		"AWS_ACCESS_KEY_ID=" + teststore.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + teststore.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true",
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(w.fleet.UID), Gid: uint32(w.fleet.GID)}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	w.t.Logf("%s: certnode %s -> %d\nstdout:\n%s\nstderr:\n%s", h.Name, strings.Join(args, " "), code, stdout.String(), stderr.String())
	return code, stdout.String(), stderr.String()
}

func (w *pullWorld) importFP() string {
	w.t.Helper()
	is, p := w.issue(devca.Leaf{})
	code, stdout, _ := w.certpush("import", certName, "--cert", p[0], "--chain", p[1], "--key", p[2])
	if code != 0 || !strings.Contains(stdout, "published") {
		w.t.Fatalf("import exited %d, stdout %q: want it published", code, stdout)
	}
	return bundle.Fingerprint(is.Leaf)
}

// TestPullMode: nodes that start with only the bootstrap placeholder pull
// the published certificate and their nginx serves it; a new publish is
// picked up on the next pull; status --store shows every node; with the
// store down a node keeps serving and exits 1.
func TestPullMode(t *testing.T) {
	w := newPullWorld(t, 2)
	fp1 := w.importFP()
	for i := range w.fleet.Hosts {
		if code, stdout, _ := w.certnode(i, "pull", "--wait", "20s"); code != 0 || !strings.Contains(stdout, "installed") {
			t.Fatalf("first pull: exit %d", code)
		}
	}
	w.wantServed(fp1, fp1)
	if code, stdout, _ := w.certpush("publish"); code != 0 || !strings.Contains(stdout, "unchanged") {
		t.Fatalf("publish of what is current: exit %d %q, want unchanged", code, stdout)
	}
	if code, stdout, _ := w.certnode(0, "pull"); code != 0 || !strings.Contains(stdout, "unchanged") {
		t.Fatalf("pull with nothing new: exit %d %q", code, stdout)
	}

	fp2 := w.importFP()
	if code, stdout, _ := w.certpush("status", "--store"); code != 1 || !strings.Contains(stdout, "0 of 2 nodes aligned") {
		t.Fatalf("status --store before the nodes pulled: exit %d %q", code, stdout)
	}
	for i := range w.fleet.Hosts {
		if code, _, _ := w.certnode(i, "pull"); code != 0 {
			t.Fatalf("pull after a new publish: exit %d", code)
		}
	}
	w.wantServed(fp2, fp2)
	if code, stdout, _ := w.certpush("status", "--store"); code != 0 || !strings.Contains(stdout, "2 of 2 nodes aligned") {
		t.Fatalf("status --store: exit %d %q", code, stdout)
	}

	if err := w.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// The node's account can write its root.
	metrics := filepath.Join(w.fleet.Hosts[0].Root, "certnode.prom")
	code, _, stderr := w.certnode(0, "pull", "--metrics-file", metrics)
	if code != 1 || !strings.Contains(stderr, "store unreachable") || !strings.Contains(stderr, "still serving") {
		t.Fatalf("pull with the store down: exit %d, stderr %q", code, stderr)
	}
	data, err := os.ReadFile(metrics)
	if err != nil || !strings.Contains(string(data), "certnode_pull_store_reachable 0") {
		t.Fatalf("metrics after the store went down: %v\n%s", err, data)
	}
	w.wantServed(fp2, fp2)
}
