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
	manifest, err := b.ReadFile("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	status := filepath.Join(had.incoming, wire.StatusFile(certName))
	if err := os.MkdirAll(filepath.Dir(status), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(status, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := New(b, f.options(t))
	if err != nil {
		t.Fatal(err)
	}
	rs := p.Run(t.Context(), f.inventory())
	if got, want := results(rs), []string{Installed, Unchanged}; !slices.Equal(got, want) {
		t.Fatalf("results %v, want %v (%+v)", got, want, rs)
	}
	id := b.Manifest.ID
	key, err := os.Stat(filepath.Join(f.hosts[0].incoming, certName, id, "privkey.pem"))
	if err != nil || key.Mode().Perm() != 0o600 {
		t.Errorf("uploaded key: %v %v", key, err)
	}
	if _, execs := f.hosts[0].counts(); len(execs) != 1 || !strings.Contains(execs[0], "install --json --id "+id+" "+certName) {
		t.Errorf("commands run on the first host: %q", execs)
	}
	if _, err := os.Stat(filepath.Join(had.incoming, certName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unchanged host got an upload: %v", err)
	}
	if _, execs := had.counts(); len(execs) != 0 {
		t.Errorf("commands run on the unchanged host: %q", execs)
	}
	if rs[1].Previous != id {
		t.Errorf("previous = %q, want %q", rs[1].Previous, id)
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
		status     string // the host's status file; "" for none
		dryRun     bool
		want       string
		wantDetail string
	}{
		{desc: "dry run, nothing installed", dryRun: true, want: Planned, wantDetail: "none -> " + b.Manifest.ID},
		{desc: "dry run, has it", status: string(manifest), dryRun: true, want: Unchanged},
		{desc: "bad id in status file", status: bad, want: Failed, wantDetail: ""},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			f := newFixture(t, 1)
			h := f.hosts[0]
			if tc.status != "" {
				status := filepath.Join(h.incoming, wire.StatusFile(certName))
				if err := os.MkdirAll(filepath.Dir(status), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(status, []byte(tc.status), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			opts := f.options(t)
			opts.DryRun = tc.dryRun
			p, err := New(b, opts)
			if err != nil {
				t.Fatal(err)
			}
			r := p.Run(t.Context(), f.inventory())[0]
			if r.Result != tc.want || r.Detail != tc.wantDetail {
				t.Fatalf("result %q detail %q (%v), want %q %q", r.Result, r.Detail, r.Err, tc.want, tc.wantDetail)
			}
			if r.Result == Failed && !strings.Contains(r.ErrorText, "installed manifest") {
				t.Errorf("error %q does not name the installed manifest", r.ErrorText)
			}
			if r.OK() != (tc.want != Failed) {
				t.Errorf("OK() = %v for %s", r.OK(), r.Result)
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

// TestUploadRemovedWhenNotTaken: an install that the host refuses before
// certnode took the upload leaves no copy of the key in incoming; one that
// certnode answered is left to certnode.
func TestUploadRemovedWhenNotTaken(t *testing.T) {
	testCases := []struct {
		desc       string
		refuse     string
		result     string
		wantUpload bool
	}{
		{desc: "refused by the forced command", refuse: "certnode-forced-command: refused: option --force is not allowed", wantUpload: false},
		{desc: "answered by certnode", result: wire.Failed, wantUpload: true},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			b := newBundle(t)
			f := newFixture(t, 1)
			h := f.hosts[0]
			h.refuse, h.result = tc.refuse, tc.result
			opts := f.options(t)
			opts.Force = true
			p, err := New(b, opts)
			if err != nil {
				t.Fatal(err)
			}
			rs := p.Run(t.Context(), f.inventory())
			if rs[0].Result != Failed || !errors.Is(rs[0].Err, ErrInstall) {
				t.Fatalf("result %+v, want failed (%v)", rs[0], ErrInstall)
			}
			if tc.refuse != "" && !strings.Contains(rs[0].ErrorText, "refused") {
				t.Errorf("error %q does not say the host refused", rs[0].ErrorText)
			}
			got := h.uploads()
			if tc.wantUpload && !slices.Equal(got, []string{b.Manifest.ID}) || !tc.wantUpload && len(got) != 0 {
				t.Errorf("incoming holds %v, want the upload: %v", got, tc.wantUpload)
			}
		})
	}
}

// TestUploadAlreadyThere: a bundle another push put in place is used as
// it is, never replaced, and never removed by this push.
func TestUploadAlreadyThere(t *testing.T) {
	for _, refuse := range []string{"", "certnode-forced-command: refused"} {
		b := newBundle(t)
		f := newFixture(t, 1)
		h := f.hosts[0]
		h.refuse = refuse
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
		rs := p.Run(t.Context(), f.inventory())
		if want := map[bool]string{true: Installed, false: Failed}[refuse == ""]; rs[0].Result != want {
			t.Errorf("refuse %q: result %+v, want %s", refuse, rs[0], want)
		}
		if strings.Contains(rs[0].ErrorText, "malformed") {
			t.Errorf("refuse %q: error %q", refuse, rs[0].ErrorText)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Errorf("refuse %q: the upload in place was replaced or removed: %v", refuse, err)
		}
		if got := h.uploads(); !slices.Equal(got, []string{b.Manifest.ID}) {
			t.Errorf("refuse %q: incoming holds %v, want only the upload in place", refuse, got)
		}
	}
}

// TestUploadAgainWhenGone: when the upload found in place is gone by the
// time certnode runs (installed or removed by the push that made it),
// the bundle is uploaded again and installed.
func TestUploadAgainWhenGone(t *testing.T) {
	b := newBundle(t)
	f := newFixture(t, 1)
	h := f.hosts[0]
	final := filepath.Join(h.incoming, certName, b.Manifest.ID)
	putBundle(t, b, final)
	h.next = []string{wire.Nothing}
	var reuploaded bool
	h.onExec = func(n int) {
		switch n {
		case 1: // the first install: another run took it meanwhile
			os.RemoveAll(final)
		case 2:
			_, err := os.Stat(filepath.Join(final, "privkey.pem"))
			reuploaded = err == nil
		}
	}
	p, err := New(b, f.options(t))
	if err != nil {
		t.Fatal(err)
	}
	rs := p.Run(t.Context(), f.inventory())
	if rs[0].Result != Installed {
		t.Fatalf("result %+v, want installed", rs[0])
	}
	if _, execs := h.counts(); len(execs) != 2 || !reuploaded {
		t.Errorf("commands run: %q, uploaded again: %v; want two installs, the second after a new upload", execs, reuploaded)
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
