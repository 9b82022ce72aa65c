package install

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/wire"
)

// DefaultPlaceholderValidity is how long a bootstrap placeholder is valid
// unless asked otherwise: long enough to set a node up, short enough that
// a forgotten one shows up as expiring.
const DefaultPlaceholderValidity = 7 * 24 * time.Hour

// Bootstrap installs a self-signed placeholder for name, for the
// configured domains, so that the web server's config can point at
// live/<name>/ before the first real certificate arrives. It is written
// like any version (key_mode, owner and group from creation) and marked
// as a placeholder in its manifest; the first real bundle replaces it
// whatever its age. Nothing is run: no test, no reload. A certificate that
// has a version installed already is left alone (Unchanged).
func (in *Installer) Bootstrap(ctx context.Context, name string, validity time.Duration) (Result, error) {
	r := Result{InstallResult: wire.InstallResult{Cert: name}}
	c, ok := in.Config.Certs[name]
	if !ok {
		return r, fmt.Errorf("%w: %q is not under certs in %s", ErrNotConfigured, name, in.Config.Path)
	}
	if len(c.Domains) == 0 {
		return r, fmt.Errorf("%s: set domains: for this certificate in %s; the placeholder is made for them", name, in.Config.Path)
	}
	if err := in.prepare(); err != nil {
		return r, err
	}
	unlock, err := in.lock(ctx)
	if err != nil {
		return r, err
	}
	defer unlock()
	in.cleanStray()
	cur, err := in.current(name)
	if err != nil {
		return r, err
	}
	if cur != nil {
		r.Result, r.ID = Unchanged, cur.ID
		return r, nil
	}
	now := in.now()
	mat, err := bundle.Placeholder(c.Domains, validity, now)
	if err != nil {
		return r, err
	}
	m := bundle.NewManifest(name, mat, bundle.SourcePlaceholder, now)
	own, err := in.owner(c)
	if err != nil {
		return r, err
	}
	manifest, err := m.Marshal()
	if err != nil {
		return r, err
	}
	contents := bundle.Contents(mat)
	contents[bundle.ManifestFile] = manifest
	tmp, err := in.writeVersion(name, m.ID, contents, c, own)
	if err != nil {
		return r, err
	}
	if _, err := in.place(tmp, name, m.ID, nil); err != nil {
		os.RemoveAll(tmp)
		return r, err
	}
	if err := in.swap(name, filepath.Join("..", "archive", name, m.ID)); err != nil {
		return r, fmt.Errorf("switch live link: %w", err)
	}
	r.Result, r.ID, r.Fingerprint, r.NotAfter = Installed, m.ID, m.Fingerprint, m.NotAfter
	return r, nil
}
