package push

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/testlog"
	"github.com/certpush/certpush/internal/wire"
)

// fixture is a bundle, a client key and a few in-process hosts, all in
// one known_hosts file.
type fixture struct {
	client ssh.Signer
	hosts  []*sshHost
	known  string
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	f := &fixture{client: newSigner(t, "ed25519")}
	lines := map[string]ssh.PublicKey{}
	for range n {
		h := startHost(t, f.client.PublicKey())
		f.hosts = append(f.hosts, h)
		lines[h.addr] = h.keys[0].PublicKey()
	}
	f.known = writeKnownHosts(t, lines)
	return f
}

func (f *fixture) inventory() []inventory.Host {
	var hs []inventory.Host
	for _, h := range f.hosts {
		hs = append(hs, h.inventory())
	}
	return hs
}

func (f *fixture) options(t *testing.T) Options {
	return Options{
		Auth:       []ssh.AuthMethod{ssh.PublicKeys(f.client)},
		KnownHosts: f.known,
		Install:    true,
		Timeout:    5 * time.Second,
		Logger:     testlog.Logger(t),
	}
}

func results(rs []Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Result)
	}
	return out
}

func TestRunInstallAndUnchanged(t *testing.T) {
	b := newBundle(t)
	f := newFixture(t, 2)
	// The second host has the bundle already.
	had := f.hosts[1]
	id := b.Manifest.ID
	had.installed = id
	p, err := New(b, f.options(t))
	if err != nil {
		t.Fatal(err)
	}
	rs := p.Run(t.Context(), f.inventory())
	if got, want := results(rs), []string{Installed, Unchanged}; !slices.Equal(got, want) {
		t.Fatalf("results %v, want %v (%+v)", got, want, rs)
	}
	for _, h := range f.hosts {
		// One command each, the bundle on its stdin, nothing uploaded.
		if _, execs := h.counts(); len(execs) != 1 || execs[0] != "certnode install --json --stdin --id "+id+" "+certName {
			t.Errorf("commands run on %s: %q", h.addr, execs)
		}
		if _, err := os.Stat(filepath.Join(h.incoming, certName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s got an upload: %v", h.addr, err)
		}
	}
	if f.hosts[0].installed != id {
		t.Errorf("first host has %q, want %q", f.hosts[0].installed, id)
	}
	if rs[1].Previous != id {
		t.Errorf("previous = %q, want %q", rs[1].Previous, id)
	}
}

// TestUploadForTimer: an install: cron host gets an SFTP upload, renamed
// into place with the key 0600, and no command; one that has the bundle
// (its status file says so) gets nothing.
func TestUploadForTimer(t *testing.T) {
	b := newBundle(t)
	f := newFixture(t, 2)
	had := f.hosts[1]
	writeStatus(t, had, b)
	p, err := New(b, f.options(t))
	if err != nil {
		t.Fatal(err)
	}
	hosts := f.inventory()
	for i := range hosts {
		hosts[i].Install = inventory.InstallCron
	}
	rs := p.Run(t.Context(), hosts)
	if got, want := results(rs), []string{Uploaded, Unchanged}; !slices.Equal(got, want) {
		t.Fatalf("results %v, want %v (%+v)", got, want, rs)
	}
	key, err := os.Stat(filepath.Join(f.hosts[0].incoming, certName, b.Manifest.ID, "privkey.pem"))
	if err != nil || key.Mode().Perm() != 0o600 {
		t.Errorf("uploaded key: %v %v", key, err)
	}
	for _, h := range f.hosts {
		if _, execs := h.counts(); len(execs) != 0 {
			t.Errorf("commands run on %s: %q", h.addr, execs)
		}
	}
	if _, err := os.Stat(filepath.Join(had.incoming, certName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unchanged host got an upload: %v", err)
	}
}

// writeStatus gives h the status file certnode publishes for b.
func writeStatus(t *testing.T, h *sshHost, b *bundle.Bundle) {
	t.Helper()
	manifest, err := b.ReadFile("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	writeStatusFile(t, h, string(manifest))
}

func writeStatusFile(t *testing.T, h *sshHost, content string) {
	t.Helper()
	status := filepath.Join(h.incoming, wire.StatusFile(certName))
	if err := os.MkdirAll(filepath.Dir(status), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(status, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunStops(t *testing.T) {
	testCases := []struct {
		desc        string
		result      string // what every host's certnode reports
		maxFailures int
		cancelAfter int // cancel the context after this many hosts (0: never)
		want        []string
		wantDetail  string // of the skipped hosts
	}{
		{desc: "max failures", result: wire.Refused, maxFailures: 1,
			want: []string{Failed, Failed, Skipped, Skipped}, wantDetail: "2 hosts failed, more than 1"},
		{desc: "no limit", result: wire.Refused,
			want: []string{Failed, Failed, Failed, Failed}},
		{desc: "cancelled", result: wire.Installed, cancelAfter: 1,
			want: []string{Installed, Skipped, Skipped, Skipped}, wantDetail: "rollout interrupted"},
	}
	b := newBundle(t)
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			f := newFixture(t, 4)
			for _, h := range f.hosts {
				h.result = tc.result
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			opts := f.options(t)
			opts.MaxFailures = tc.maxFailures
			opts.Progress = func(done, _ int, _ Result) {
				if done == tc.cancelAfter {
					cancel()
				}
			}
			p, err := New(b, opts)
			if err != nil {
				t.Fatal(err)
			}
			rs := p.Run(ctx, f.inventory())
			if got := results(rs); !slices.Equal(got, tc.want) {
				t.Fatalf("results %v, want %v", got, tc.want)
			}
			for i, r := range rs {
				if r.Result == Skipped && !strings.Contains(r.Detail, tc.wantDetail) {
					t.Errorf("skipped host detail %q, want %q", r.Detail, tc.wantDetail)
				}
				if r.Result == Failed && !errors.Is(r.Err, ErrInstall) {
					t.Errorf("failed host error %v, want ErrInstall", r.Err)
				}
				if _, execs := f.hosts[i].counts(); r.Result == Skipped && len(execs) != 0 {
					t.Errorf("skipped host %d ran %q", i, execs)
				}
			}
		})
	}
}

func TestHostKeyErrors(t *testing.T) {
	client := newSigner(t, "ed25519")
	h := startHost(t, client.PublicKey())
	other := startHost(t, client.PublicKey())
	testCases := []struct {
		desc  string
		known map[string]ssh.PublicKey
		want  error
		text  []string
	}{
		{desc: "unknown host", known: map[string]ssh.PublicKey{other.addr: other.keys[0].PublicKey()},
			want: ErrUnknownHost, text: []string{"is not in", "refusing to connect", ssh.FingerprintSHA256(h.keys[0].PublicKey()), "trust it with: echo '"}},
		{desc: "changed key", known: map[string]ssh.PublicKey{h.addr: other.keys[0].PublicKey()},
			want: ErrHostKeyChanged, text: []string{"HOST KEY HAS CHANGED", ssh.FingerprintSHA256(h.keys[0].PublicKey()), "Nothing was sent",
				"ssh-keygen -R '" + knownhosts.Normalize(h.addr) + "' -f ", "&& echo '" + knownhosts.Line([]string{knownhosts.Normalize(h.addr)}, h.keys[0].PublicKey()) + "' >> "}},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			known := writeKnownHosts(t, tc.known)
			d, err := NewDialer([]ssh.AuthMethod{ssh.PublicKeys(client)}, known, time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.Dial(t.Context(), h.inventory())
			var hk *HostKeyError
			if !errors.Is(err, tc.want) || !errors.As(err, &hk) {
				t.Fatalf("Dial = %v, want %v", err, tc.want)
			}
			for _, s := range tc.text {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if tc.want == ErrUnknownHost && !strings.Contains(err.Error(), hk.Line) {
				t.Errorf("error %q lacks the line to trust %q", err, hk.Line)
			}
			if auths, _ := h.counts(); auths != 0 {
				t.Errorf("%d authentication attempts reached the host", auths)
			}
		})
	}
	if _, err := NewDialer(nil, filepath.Join(t.TempDir(), "missing"), time.Second, nil); !errors.Is(err, ErrNoKnownHostFile) {
		t.Errorf("NewDialer with no known_hosts = %v", err)
	}
}

// The server offers an ECDSA key before its Ed25519 one; known_hosts has
// only the Ed25519 key, so the client must ask for that one.
func TestHostKeyAlgorithms(t *testing.T) {
	client := newSigner(t, "ed25519")
	ecKey, edKey := newSigner(t, "ecdsa"), newSigner(t, "ed25519")
	h := startHost(t, client.PublicKey(), ecKey, edKey)
	testCases := []struct {
		desc     string
		key      ssh.PublicKey
		wantAlgs []string
	}{
		{desc: "ed25519 only", key: edKey.PublicKey(), wantAlgs: []string{ssh.KeyAlgoED25519}},
		{desc: "ecdsa only", key: ecKey.PublicKey(), wantAlgs: []string{ssh.KeyAlgoECDSA256}},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			known := writeKnownHosts(t, map[string]ssh.PublicKey{h.addr: tc.key})
			d, err := NewDialer([]ssh.AuthMethod{ssh.PublicKeys(client)}, known, time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.keys.algorithms(h.addr); !slices.Equal(got, tc.wantAlgs) {
				t.Errorf("algorithms = %v, want %v", got, tc.wantAlgs)
			}
			c, err := d.Dial(t.Context(), h.inventory())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			c.Close()
		})
	}
	if got := algorithmsFor(ssh.KeyAlgoRSA); !slices.Equal(got, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}) {
		t.Errorf("algorithms for an RSA key: %v", got)
	}
}

// What a host's status file says decides the plan; a dry run changes
// nothing; a status file with a malformed id is refused.
func TestPlan(t *testing.T) {
	b := newBundle(t)
	manifest, err := b.ReadFile("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(manifest), b.Manifest.ID, "../../etc/passwd", 1)
	if bad == string(manifest) {
		t.Fatal("no id in the manifest")
	}
	testCases := []struct {
		desc       string
		cron       bool   // an install: cron host, read over SFTP
		status     string // a cron host's status file; "" for none
		installed  string // an install: now host's bundle
		previous   string // what its certnode reports as the previous id
		dryRun     bool
		want       string
		wantDetail string
		wantErr    string
	}{
		{desc: "dry run, nothing installed", dryRun: true, want: Planned, wantDetail: "none -> " + b.Manifest.ID},
		{desc: "dry run, has another", installed: "0123456789abcdef", dryRun: true, want: Planned, wantDetail: "0123456789abcdef -> " + b.Manifest.ID},
		{desc: "dry run, has it", installed: b.Manifest.ID, dryRun: true, want: Unchanged},
		{desc: "bad previous id from certnode", previous: "../../etc/passwd", want: Failed, wantErr: "bad previous id"},
		{desc: "cron: dry run, nothing installed", cron: true, dryRun: true, want: Planned, wantDetail: "none -> " + b.Manifest.ID},
		{desc: "cron: dry run, has it", cron: true, status: string(manifest), dryRun: true, want: Unchanged},
		{desc: "cron: bad id in status file", cron: true, status: bad, want: Failed, wantErr: "installed manifest"},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			f := newFixture(t, 1)
			h := f.hosts[0]
			h.installed, h.previous = tc.installed, tc.previous
			if tc.status != "" {
				writeStatusFile(t, h, tc.status)
			}
			opts := f.options(t)
			opts.DryRun = tc.dryRun
			p, err := New(b, opts)
			if err != nil {
				t.Fatal(err)
			}
			hosts := f.inventory()
			if tc.cron {
				hosts[0].Install = inventory.InstallCron
			}
			r := p.Run(t.Context(), hosts)[0]
			if r.Result != tc.want || r.Detail != tc.wantDetail {
				t.Fatalf("result %q detail %q (%v), want %q %q", r.Result, r.Detail, r.Err, tc.want, tc.wantDetail)
			}
			if r.Result == Failed && !strings.Contains(r.ErrorText, tc.wantErr) {
				t.Errorf("error %q, want it to say %q", r.ErrorText, tc.wantErr)
			}
			if r.OK() != (tc.want != Failed) {
				t.Errorf("OK() = %v for %s", r.OK(), r.Result)
			}
			if tc.dryRun && h.installed != tc.installed {
				t.Errorf("a dry run installed %q", h.installed)
			}
			if _, err := os.Stat(filepath.Join(h.incoming, certName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the host got an upload: %v", err)
			}
		})
	}
}

// uploads lists what is in a host's incoming/<name>/.
func (h *sshHost) uploads() []string {
	entries, _ := os.ReadDir(filepath.Join(h.incoming, certName))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestUploadAlreadyThere: a bundle another push put in place for the
// node's timer is used as it is, never replaced, and never removed.
func TestUploadAlreadyThere(t *testing.T) {
	b := newBundle(t)
	f := newFixture(t, 1)
	h := f.hosts[0]
	final := filepath.Join(h.incoming, certName, b.Manifest.ID)
	putBundle(t, b, final)
	marker := filepath.Join(final, "in-use")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := New(b, f.options(t))
	if err != nil {
		t.Fatal(err)
	}
	hosts := f.inventory()
	hosts[0].Install = inventory.InstallCron
	rs := p.Run(t.Context(), hosts)
	if rs[0].Result != Uploaded {
		t.Errorf("result %+v, want %s", rs[0], Uploaded)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the upload in place was replaced or removed: %v", err)
	}
	if got := h.uploads(); !slices.Equal(got, []string{b.Manifest.ID}) {
		t.Errorf("incoming holds %v, want only the upload in place", got)
	}
}

// TestRefusedByForcedCommand: a command the host refuses fails the host
// with the host's words, and nothing is left on it.
func TestRefusedByForcedCommand(t *testing.T) {
	b := newBundle(t)
	f := newFixture(t, 1)
	h := f.hosts[0]
	h.refuse = "certnode-forced-command: refused: option --force is not allowed"
	opts := f.options(t)
	opts.Force = true
	p, err := New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Run(t.Context(), f.inventory())[0]
	if r.Result != Failed || !errors.Is(r.Err, ErrInstall) || !strings.Contains(r.ErrorText, "option --force is not allowed") {
		t.Fatalf("result %+v, want failed with the host's refusal (%v)", r, ErrInstall)
	}
	if got := h.uploads(); len(got) != 0 {
		t.Errorf("incoming holds %v", got)
	}
}

// putBundle writes b's files into dir, as an earlier upload left them.
func putBundle(t *testing.T, b *bundle.Bundle, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(append([]string{}, bundle.Files...), bundle.ManifestFile) {
		data, err := b.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
