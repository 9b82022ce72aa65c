package push

import (
	"bytes"
	"context"
	"crypto/md5"  //nolint:gosec // monitoring and some CDNs pin MD5 fingerprints
	"crypto/sha1" //nolint:gosec // some load balancers report SHA-1 fingerprints
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/verify"
)

// Verbs an exec target implements.
const (
	VerbCurrent = "current"
	VerbDeploy  = "deploy"
)

// CombinedFile is the extra file handed to exec targets: fullchain then
// key, the form HAProxy and some appliances read.
const CombinedFile = "combined.pem"

// Fingerprints are the fingerprints of a leaf certificate in the three
// hashes targets report, as lowercase hex without separators.
type Fingerprints struct {
	MD5, SHA1, SHA256 string
}

// LeafFingerprints computes the fingerprints of the first certificate in
// certPEM.
func LeafFingerprints(certPEM []byte) (Fingerprints, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return Fingerprints{}, errors.New("bundle cert.pem holds no certificate")
	}
	m := md5.Sum(blk.Bytes)   //nolint:gosec
	s1 := sha1.Sum(blk.Bytes) //nolint:gosec
	s2 := sha256.Sum256(blk.Bytes)
	return Fingerprints{MD5: hex.EncodeToString(m[:]), SHA1: hex.EncodeToString(s1[:]), SHA256: hex.EncodeToString(s2[:])}, nil
}

// NormalizeFingerprint reads a fingerprint as targets print it: hex,
// with or without colons, any case, optionally prefixed by the hash's
// name ("SHA256 Fingerprint=AB:CD..." as openssl x509 -fingerprint
// prints it). It returns lowercase hex, or "" for an empty answer or
// "none" (nothing served yet).
func NormalizeFingerprint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		s = s[i+1:]
	}
	s = strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(s))
	if s == "" || s == "none" {
		return "", nil
	}
	if _, err := hex.DecodeString(s); err != nil || (len(s) != 64 && len(s) != 40) {
		return "", fmt.Errorf("not a SHA-256 or SHA-1 fingerprint: %q", short(s, 80))
	}
	return s, nil
}

// Matches reports whether fp (normalized) is the SHA-256 or the SHA-1
// fingerprint of f.
func (f Fingerprints) Matches(fp string) bool {
	return fp != "" && (fp == f.SHA256 || fp == f.SHA1)
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// execTimeout is the bound of each run of h's command.
func (p *Pusher) execTimeout(h inventory.Host) time.Duration {
	if h.ExecTimeout > 0 {
		return h.ExecTimeout
	}
	return p.opts.Timeout
}

// hostTimeout bounds the whole job of h: for an exec target, current,
// deploy and current again, and the TLS checks.
func (p *Pusher) hostTimeout(h inventory.Host) time.Duration {
	if !h.IsExec() {
		return p.opts.Timeout
	}
	return 3*p.execTimeout(h) + time.Duration(len(h.Verify))*verifyTimeout
}

// deliverExec runs an exec target: current, and when the target serves
// something else than the bundle's certificate, deploy and current
// again, then the TLS checks of the target's verify endpoints.
func (p *Pusher) deliverExec(ctx context.Context, h inventory.Host, r *Result) error {
	if len(h.Exec) == 0 {
		return errors.New("exec target without a command")
	}
	fps, err := LeafFingerprints(p.files[bundle.CertFile])
	if err != nil {
		return err
	}
	dir, err := p.stage(fps)
	if err != nil {
		return fmt.Errorf("stage bundle: %w", err)
	}
	defer os.RemoveAll(dir)
	env := p.execEnv(h, dir, fps)

	before, err := p.current(ctx, h, env)
	if err != nil {
		return err
	}
	if fps.Matches(before) && !p.opts.Force {
		r.Result = Unchanged
		r.Detail = "serves " + fps.SHA256[:16]
		return nil
	}
	if p.opts.DryRun {
		r.Result = Planned
		r.Detail = describeChange(short(before, 16), fps.SHA256[:16])
		return nil
	}
	if _, err := p.runVerb(ctx, h, VerbDeploy, env); err != nil {
		return err
	}
	after, err := p.current(ctx, h, env)
	if err != nil {
		return fmt.Errorf("after deploy: %w", err)
	}
	if !fps.Matches(after) {
		shown := after
		if shown == "" {
			shown = "none"
		}
		return fmt.Errorf("deployed, but current reports %s, not %s", short(shown, 16), fps.SHA256[:16])
	}
	for _, ep := range h.Verify {
		if err := verify.Expect(ctx, ep, p.opts.SNI, p.b.Manifest.Fingerprint, verifyTimeout); err != nil {
			return fmt.Errorf("deployed, but TLS check failed: %w", err)
		}
	}
	r.Result = Installed
	r.Detail = describeChange(short(before, 16), fps.SHA256[:16])
	if len(h.Verify) > 0 {
		r.Detail += "; serves it on " + strings.Join(h.Verify, ", ")
	}
	return nil
}

// current runs the current verb and reads its fingerprint: the first
// non-empty line of its output.
func (p *Pusher) current(ctx context.Context, h inventory.Host, env []string) (string, error) {
	out, err := p.runVerb(ctx, h, VerbCurrent, env)
	if err != nil {
		return "", err
	}
	line := ""
	for l := range strings.SplitSeq(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			line = l
			break
		}
	}
	fp, err := NormalizeFingerprint(line)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", h.Exec[0], VerbCurrent, err)
	}
	return fp, nil
}

// maxExecOutput bounds what is kept of a command's stdout and stderr.
const maxExecOutput = 64 << 10

// runVerb runs h's command with verb appended, without a shell, within
// the exec timeout; a cancelled ctx kills it and its process group.
func (p *Pusher) runVerb(ctx context.Context, h inventory.Host, verb string, env []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.execTimeout(h))
	defer cancel()
	argv := append(append([]string(nil), h.Exec...), verb)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(env, "CERTPUSH_VERB="+verb)
	cmd.Dir = os.TempDir()
	var stdout bytes.Buffer
	var stderr bytes.Buffer
	cmd.Stdout = &tail{max: maxExecOutput, buf: &stdout}
	cmd.Stderr = &tail{max: 2048, buf: &stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a hook's children (the cloud CLI) too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	p.opts.Logger.Debug("exec target", "host", h.Name, "verb", verb, "duration", time.Since(start), "error", err)
	if err != nil {
		msg := strings.Join(strings.Fields(stderr.String()), " ")
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timeout %s)", err, p.execTimeout(h))
		}
		if msg != "" {
			return nil, fmt.Errorf("%s %s: %v: %s", h.Exec[0], verb, err, msg)
		}
		return nil, fmt.Errorf("%s %s: %v", h.Exec[0], verb, err)
	}
	return stdout.Bytes(), nil
}

// stage writes the bundle's files into a new private directory (0700;
// the key and the combined PEM 0600 from creation) and returns it.
func (p *Pusher) stage(fps Fingerprints) (dir string, err error) {
	dir, err = os.MkdirTemp("", "certpush-exec-")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", err
	}
	combined := append(append([]byte(nil), p.files[bundle.FullchainFile]...), p.files[bundle.KeyFile]...)
	write := func(name string, data []byte, mode os.FileMode) error {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	for _, name := range append(bundle.Files, bundle.ManifestFile) {
		mode := os.FileMode(0o644)
		if name == bundle.KeyFile {
			mode = 0o600
		}
		if err := write(name, p.files[name], mode); err != nil {
			return "", err
		}
	}
	if err := write(CombinedFile, combined, 0o600); err != nil {
		return "", err
	}
	return dir, nil
}

// execEnv is certpush's environment (the cloud CLIs' credentials and
// PATH come from there) plus the bundle's paths and metadata.
func (p *Pusher) execEnv(h inventory.Host, dir string, fps Fingerprints) []string {
	m := p.b.Manifest
	colons := func(hexfp string) string {
		b, _ := hex.DecodeString(hexfp)
		return verify.Colons(b)
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CERTPUSH_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"CERTPUSH_TARGET="+h.Name,
		"CERTPUSH_NAME="+m.Name,
		"CERTPUSH_ID="+m.ID,
		"CERTPUSH_DOMAINS="+strings.Join(m.Domains, ","),
		"CERTPUSH_SNI="+p.opts.SNI,
		"CERTPUSH_SERIAL="+m.Serial,
		"CERTPUSH_NOT_BEFORE="+m.NotBefore.UTC().Format(time.RFC3339),
		"CERTPUSH_NOT_AFTER="+m.NotAfter.UTC().Format(time.RFC3339),
		"CERTPUSH_FP_MD5="+colons(fps.MD5),
		"CERTPUSH_FP_SHA1="+colons(fps.SHA1),
		"CERTPUSH_FP_SHA256="+colons(fps.SHA256),
		"CERTPUSH_DIR="+dir,
		"CERTPUSH_CERT="+filepath.Join(dir, bundle.CertFile),
		"CERTPUSH_CHAIN="+filepath.Join(dir, bundle.ChainFile),
		"CERTPUSH_FULLCHAIN="+filepath.Join(dir, bundle.FullchainFile),
		"CERTPUSH_KEY="+filepath.Join(dir, bundle.KeyFile),
		"CERTPUSH_COMBINED="+filepath.Join(dir, CombinedFile),
		"CERTPUSH_MANIFEST="+filepath.Join(dir, bundle.ManifestFile),
	)
}

func removeAll(dir string) { os.RemoveAll(dir) }
