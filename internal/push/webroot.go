package push

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sync"

	"github.com/pkg/sftp"

	"github.com/certpush/certpush/internal/acme/http01"
	"github.com/certpush/certpush/internal/inventory"
)

// Webroot publishes ACME HTTP-01 token files into the webroot of every host
// over SFTP, so that whichever host the CA reaches can answer, and removes
// them afterwards. It implements acme.Publisher: Publish succeeds only when
// every host has the file; Unpublish is best effort on every host. Calls
// for different tokens may run concurrently.
type Webroot struct {
	Dialer   *Dialer
	Hosts    []inventory.Host
	Webroot  string // default directory; a host's own Webroot wins
	Parallel int
}

var errBadToken = errors.New("bad ACME token")

func checkToken(token string) error {
	if !http01.ValidToken(token) {
		return fmt.Errorf("%w %q: only base64url characters are allowed, at most %d", errBadToken, token, http01.MaxTokenLen)
	}
	return nil
}

// file is where token lives on h.
func (w *Webroot) file(h inventory.Host, token string) string {
	root := w.Webroot
	if h.Webroot != "" {
		root = h.Webroot
	}
	return path.Join(root, http01.ChallengePath(token))
}

// Publish writes <webroot>/.well-known/acme-challenge/<token> (mode 0644,
// the web server must read it) on every host, through a temporary file and
// a rename.
func (w *Webroot) Publish(ctx context.Context, token string, keyAuth []byte) error {
	if err := checkToken(token); err != nil {
		return err
	}
	return w.each(ctx, func(sc *sftp.Client, h inventory.Host) error {
		final := w.file(h, token)
		dir := path.Dir(final)
		if err := sc.MkdirAll(dir); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		tmp := path.Join(dir, ".tmp-"+token)
		f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return fmt.Errorf("create %s: %w", tmp, err)
		}
		if err := f.Chmod(0o644); err != nil {
			f.Close()
			return err
		}
		if _, err := f.Write(keyAuth); err != nil {
			f.Close()
			sc.Remove(tmp)
			return err
		}
		if err := f.Close(); err != nil {
			sc.Remove(tmp)
			return err
		}
		if err := sc.PosixRename(tmp, final); err != nil {
			sc.Remove(tmp)
			return fmt.Errorf("rename into place: %w", err)
		}
		return nil
	})
}

// Unpublish removes the token file from every host; a file already gone
// is not an error.
func (w *Webroot) Unpublish(ctx context.Context, token string) error {
	if err := checkToken(token); err != nil {
		return err
	}
	return w.each(ctx, func(sc *sftp.Client, h inventory.Host) error {
		err := sc.Remove(w.file(h, token))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
}

// each runs f on every host over its own connection, Parallel at a time,
// and joins the errors, each labelled with its host.
func (w *Webroot) each(ctx context.Context, f func(*sftp.Client, inventory.Host) error) error {
	parallel := max(w.Parallel, 1)
	sem := make(chan struct{}, parallel)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, h := range w.Hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := w.onHost(ctx, h, f)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (w *Webroot) onHost(ctx context.Context, h inventory.Host, f func(*sftp.Client, inventory.Host) error) error {
	c, err := w.Dialer.dialSFTP(ctx, h)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c.sftp, h)
}
