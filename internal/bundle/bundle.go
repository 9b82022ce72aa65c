package bundle

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bounded"
	"github.com/certpush/certpush/internal/wire"
)

// Bundle is a bundle directory and its manifest, or a bundle held in
// memory (FromContents), which has no Dir.
type Bundle struct {
	Dir      string
	Manifest *Manifest
	contents map[string][]byte
}

// FromContents is the bundle made of contents (file name to bytes, the
// manifest included), as a stream brings it: nothing is on disk. Like
// Open, it parses only the manifest: call Verify for the rest.
func FromContents(contents map[string][]byte) (*Bundle, error) {
	m, err := ParseManifest(contents[ManifestFile])
	if err != nil {
		return nil, err
	}
	return &Bundle{Manifest: m, contents: contents}, nil
}

// Open reads and parses dir/manifest.json. It does not check the files:
// call Verify for that.
func Open(dir string) (*Bundle, error) {
	data, err := readRegular(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &Bundle{Dir: dir, Manifest: m}, nil
}

// ReadFile reads one file of the bundle. Only regular files are read
// (symlinks are refused) and no more than MaxFileSize bytes.
func (b *Bundle) ReadFile(name string) ([]byte, error) {
	if b.contents != nil {
		data, ok := b.contents[name]
		if !ok {
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		return data, nil
	}
	return readRegular(filepath.Join(b.Dir, name))
}

// Leaf parses the bundle's certificate (cert.pem).
func (b *Bundle) Leaf() (*x509.Certificate, error) {
	data, err := b.ReadFile(CertFile)
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(CertFile, data)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificate", filepath.Join(b.Dir, CertFile))
	}
	return certs[0], nil
}

// Verify checks that every file matches the manifest (size and SHA-256),
// that the signature is by one of trusted (required when trusted is not
// empty), that the files parse, that the manifest describes the certificate
// (id, fingerprint, names, dates), and that the material validates against
// the manifest's domains at now. It returns the parsed material.
func (b *Bundle) Verify(trusted []ed25519.PublicKey, now time.Time) (*Material, error) {
	m := b.Manifest
	if err := m.VerifySignature(trusted); err != nil {
		return nil, err
	}
	files := make(map[string][]byte, len(Files))
	for _, name := range Files {
		data, err := b.ReadFile(name)
		if err != nil {
			return nil, err
		}
		want := m.Files[name]
		sum := sha256.Sum256(data)
		if int64(len(data)) != want.Size || hex.EncodeToString(sum[:]) != want.SHA256 {
			return nil, fmt.Errorf("%w: %s", ErrHashMismatch, name)
		}
		files[name] = data
	}
	mat, err := ParseMaterial(files[CertFile], files[ChainFile], files[KeyFile])
	if err != nil {
		return nil, err
	}
	if string(files[FullchainFile]) != string(mat.Fullchain()) {
		return nil, fmt.Errorf("%w: fullchain.pem is not cert.pem followed by chain.pem", ErrManifestMismatch)
	}
	if mat.Fingerprint() != m.Fingerprint || mat.ID() != m.ID {
		return nil, fmt.Errorf("%w: fingerprint or id", ErrManifestMismatch)
	}
	if !mat.Leaf.NotAfter.Equal(m.NotAfter) || !mat.Leaf.NotBefore.Equal(m.NotBefore) {
		return nil, fmt.Errorf("%w: validity dates", ErrManifestMismatch)
	}
	if err := mat.Validate(m.Domains, now); err != nil {
		return nil, err
	}
	return mat, nil
}

// NewManifest describes material as a bundle named name.
func NewManifest(name string, mat *Material, source string, now time.Time) *Manifest {
	files := Contents(mat)
	m := &Manifest{
		Version:     FormatVersion,
		Name:        name,
		ID:          mat.ID(),
		Domains:     Domains(mat.Leaf),
		Serial:      mat.Leaf.SerialNumber.Text(16),
		NotBefore:   mat.Leaf.NotBefore.UTC(),
		NotAfter:    mat.Leaf.NotAfter.UTC(),
		Issuer:      mat.Leaf.Issuer.String(),
		Fingerprint: mat.Fingerprint(),
		KeyType:     KeyType(mat.Leaf.PublicKey),
		Files:       make(map[string]FileInfo, len(files)),
		Created:     now.UTC().Truncate(time.Second),
		Source:      source,
	}
	for n, data := range files {
		sum := sha256.Sum256(data)
		m.Files[n] = FileInfo{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	}
	return m
}

// Contents returns the payload files of material by name.
func Contents(mat *Material) map[string][]byte {
	return map[string][]byte{
		CertFile:      mat.CertPEM,
		ChainFile:     mat.ChainPEM,
		FullchainFile: mat.Fullchain(),
		KeyFile:       mat.KeyPEM,
	}
}

// Write creates the bundle directory dir, which must not exist, holding
// the material's files and the (already signed) manifest. The files are
// written into a temporary sibling directory (mode 0700; the key 0600 from
// creation, everything else 0644), synced, and the
// directory is renamed into place, so dir never exists half-written.
func Write(dir string, mat *Material, m *Manifest) (err error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("bundle %s already exists", dir)
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	manifest, err := m.Marshal()
	if err != nil {
		return err
	}
	contents := Contents(mat)
	contents[ManifestFile] = manifest
	for _, name := range append(Files, ManifestFile) {
		mode := os.FileMode(0o644)
		if name == KeyFile {
			mode = 0o600
		}
		if err = writeExclusive(filepath.Join(tmp, name), contents[name], mode); err != nil {
			return err
		}
	}
	if err = atomicfile.SyncDir(tmp); err != nil {
		return err
	}
	if err = os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err = os.Rename(tmp, dir); err != nil {
		return err
	}
	return atomicfile.SyncDir(parent)
}

// writeExclusive creates path exclusively with mode (set by open(2), before any
// byte is written; the umask can only narrow it) and writes data, synced.
func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readRegular reads a regular file without following a symlink, refusing
// files over MaxFileSize.
func readRegular(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink: bundle files must be regular files", path)
		}
		return nil, err
	}
	defer f.Close()
	return bounded.ReadRegular(f, path, MaxFileSize)
}

// Store keeps the bundles of the management server: <Dir>/<name>/<id>/ for
// each bundle and <Dir>/<name>/current, a symlink to the current id.
type Store struct {
	Dir string
}

// ErrNoBundle is returned by Current when a certificate has no bundle yet.
var ErrNoBundle = errors.New("no bundle yet")

// Current returns the current bundle of name, or an error wrapping
// ErrNoBundle.
func (s *Store) Current(name string) (*Bundle, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	id, err := os.Readlink(filepath.Join(s.Dir, name, "current"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, ErrNoBundle)
	}
	if err != nil {
		return nil, err
	}
	if !wire.ValidID(id) {
		return nil, fmt.Errorf("%s: current points to %q, not a bundle id", name, id)
	}
	return Open(filepath.Join(s.Dir, name, id))
}

// AddOptions says what a new bundle must satisfy.
type AddOptions struct {
	Domains []string // names the certificate must cover
	Source  string
	Signer  *Signer
	Now     time.Time
	// AllowOlder makes a certificate current even when it was issued
	// (not_before) before the current bundle's: nodes refuse it as a
	// downgrade unless pushed with --force.
	AllowOlder bool
	// Anchor is what the chain must verify to; the zero value trusts the
	// system's roots and refuses self-signed certificates.
	Anchor Anchor
}

// RefusedError is Add's error for material that is not fit to become the
// current bundle (invalid, or older than the current one), as opposed to
// a failure to read or write the store.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return "refused: " + e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// ErrOlder says that a certificate is older than the current bundle's.
var ErrOlder = errors.New("older than the current bundle")

// Add validates material and makes it the current bundle of name. When the
// current bundle already holds the same certificate nothing is written and
// created is false. A bundle's files are never modified once written; its
// manifest may gain signatures (see Resign). Material that is refused is a
// *RefusedError.
func (s *Store) Add(name string, mat *Material, opts AddOptions) (b *Bundle, created bool, err error) {
	if err := ValidName(name); err != nil {
		return nil, false, err
	}
	if err := mat.Validate(opts.Domains, opts.Now); err != nil {
		return nil, false, &RefusedError{err}
	}
	if err := opts.Anchor.Check(mat.Leaf, mat.Chain, opts.Now); err != nil {
		return nil, false, &RefusedError{err}
	}
	cur, err := s.Current(name)
	switch {
	case err == nil && cur.Manifest.ID == mat.ID():
		return cur, false, nil
	case err == nil && mat.Leaf.NotBefore.Before(cur.Manifest.NotBefore) && !opts.AllowOlder:
		return nil, false, &RefusedError{fmt.Errorf("%w: this certificate was issued %s, the current bundle %s on %s; nodes would refuse it as a downgrade",
			ErrOlder, mat.Leaf.NotBefore.UTC().Format(time.RFC3339), cur.Manifest.ID, cur.Manifest.NotBefore.UTC().Format(time.RFC3339))}
	case err != nil && !errors.Is(err, ErrNoBundle):
		return nil, false, err
	}
	dir := filepath.Join(s.Dir, name, mat.ID())
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		m := NewManifest(name, mat, opts.Source, opts.Now)
		if err := opts.Signer.Sign(m); err != nil {
			return nil, false, err
		}
		if err := Write(dir, mat, m); err != nil {
			return nil, false, fmt.Errorf("write bundle: %w", err)
		}
		created = true
	}
	b, err = Open(dir)
	if err != nil {
		return nil, false, err
	}
	if _, err := resign(b, opts.Signer); err != nil {
		return nil, false, err
	}
	if err := s.setCurrent(name, b.Manifest.ID); err != nil {
		return nil, false, fmt.Errorf("make bundle %s current: %w", b.Manifest.ID, err)
	}
	return b, created, nil
}

// Resign adds a signature by each of signer's keys that has not signed the
// current bundle of name yet (after a key rotation: the new key's), so
// that nodes trusting only those keys accept it. The bundle's files and id
// stay as they are; only manifest.json is replaced, atomically. It reports
// whether the manifest changed.
func (s *Store) Resign(name string, signer *Signer) (*Bundle, bool, error) {
	b, err := s.Current(name)
	if err != nil {
		return nil, false, err
	}
	changed, err := resign(b, signer)
	return b, changed, err
}

func resign(b *Bundle, signer *Signer) (bool, error) {
	changed, err := signer.AddSignatures(b.Manifest)
	if err != nil || !changed {
		return false, err
	}
	data, err := b.Manifest.Marshal()
	if err != nil {
		return false, err
	}
	if err := atomicfile.WriteFile(filepath.Join(b.Dir, ManifestFile), data, 0o644); err != nil {
		return false, fmt.Errorf("re-sign bundle %s: %w", b.Manifest.ID, err)
	}
	return true, nil
}

func (s *Store) setCurrent(name, id string) error {
	return atomicfile.ReplaceSymlink(id, filepath.Join(s.Dir, name, "current"))
}
