// Package pull is pull mode: publishing bundles to a store (certpush
// publish), pulling and installing them on nodes (certnode pull), the
// nodes' reports, and the renewal lease that lets whichever node gets
// there first renew.
package pull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/store"
)

// Results of publishing one certificate.
const (
	Published = "published"
	Unchanged = "unchanged"
)

// Errors of Publish, checked with errors.Is.
var (
	// ErrCurrentMoved: current changed while publishing (another
	// publisher, or since the lease was taken); nothing was moved.
	ErrCurrentMoved = errors.New("current moved while publishing")
	// ErrStoreNewer: the store's current certificate is newer than the
	// one being published.
	ErrStoreNewer = errors.New("the store holds a newer certificate")
	// ErrCopyMismatch: an object read back differs from what was written.
	ErrCopyMismatch = errors.New("object in the store differs from the bundle")
)

// Publisher publishes bundles to a store.
type Publisher struct {
	Store      store.Store
	Signer     *bundle.Signer
	Recipients []string
	Logger     *slog.Logger
	Now        func() time.Time
}

// PublishResult is the outcome for one certificate.
type PublishResult struct {
	Cert   string `json:"cert"`
	ID     string `json:"id"`
	Result string `json:"result"`
	Key    string `json:"key"`
}

// PublishOptions fence a publish.
type PublishOptions struct {
	// Fence, when set, is the ETag current had when the lease was taken
	// ("none" when it was missing): current moves only if it still has it.
	Fence string
}

// FenceNone is PublishOptions.Fence for a current that was missing.
const FenceNone = "none"

func (p *Publisher) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

func (p *Publisher) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// Publish puts bundle b of its certificate into the store and makes it
// current: the version objects are written create-only (one already
// there must be identical), read back and compared by SHA-256, and only
// then current moves, with a conditional write on the ETag it replaces.
// A bundle that is already current, with its key encrypted to the same
// recipients, is left alone (Unchanged).
func (p *Publisher) Publish(ctx context.Context, b *bundle.Bundle, opts PublishOptions) (PublishResult, error) {
	m := b.Manifest
	res := PublishResult{Cert: m.Name, ID: m.ID, Key: store.KeyObject(store.RecipientsID(p.Recipients))}
	cur, curTag, err := p.current(ctx, m.Name)
	if err != nil {
		return res, err
	}
	if opts.Fence != "" && opts.Fence != fenceOf(curTag) {
		return res, fmt.Errorf("%s: %w since the lease was taken: someone else published; nothing moved", m.Name, ErrCurrentMoved)
	}
	if cur != nil && cur.ID == m.ID && cur.Key == res.Key {
		res.Result = Unchanged
		return res, nil
	}
	if cur != nil && cur.ID != m.ID && cur.NotBefore.After(m.NotBefore) {
		return res, fmt.Errorf("%s: %w (%s, issued %s) than bundle %s (issued %s); nothing moved",
			m.Name, ErrStoreNewer, cur.ID, cur.NotBefore.UTC().Format(time.RFC3339), m.ID, m.NotBefore.UTC().Format(time.RFC3339))
	}
	manifest, err := p.putVersion(ctx, b, res.Key)
	if err != nil {
		return res, fmt.Errorf("%s: %w", m.Name, err)
	}
	ptr := &store.Pointer{Name: m.Name, ID: m.ID, NotBefore: m.NotBefore, ManifestSHA256: store.SHA256(manifest), Key: res.Key, Published: p.now().UTC()}
	data, err := ptr.Sign(p.Signer)
	if err != nil {
		return res, err
	}
	if curTag == "" {
		_, err = p.Store.Create(ctx, store.CurrentKey(m.Name), data)
	} else {
		_, err = p.Store.Replace(ctx, store.CurrentKey(m.Name), data, curTag)
	}
	if errors.Is(err, store.ErrPrecondition) || errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("%s: %w: another publisher moved it; run publish again", m.Name, ErrCurrentMoved)
	}
	if err != nil {
		return res, fmt.Errorf("%s: move current: %w", m.Name, err)
	}
	res.Result = Published
	p.log().Info("published", "cert", m.Name, "id", m.ID, "store", p.Store.String())
	return res, nil
}

func fenceOf(etag string) string {
	if etag == "" {
		return FenceNone
	}
	return etag
}

// current reads name's pointer as the store has it. A missing one is
// (nil, "", nil). The pointer is parsed without checking signatures: the
// publisher compares, nodes verify.
func (p *Publisher) current(ctx context.Context, name string) (*store.Pointer, string, error) {
	o, err := p.Store.Get(ctx, store.CurrentKey(name), "", store.MaxObject)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("%s: read current: %w", name, err)
	}
	ptr, err := store.ParsePointer(o.Data, name, nil)
	if err != nil {
		// A broken pointer is replaced (conditionally, on its ETag).
		p.log().Warn("current pointer is unreadable; replacing it", "cert", name, "error", err)
		return nil, o.ETag, nil
	}
	return ptr, o.ETag, nil
}

// putVersion writes the bundle's objects create-only and reads each one
// back. It returns the manifest's bytes.
func (p *Publisher) putVersion(ctx context.Context, b *bundle.Bundle, keyObject string) ([]byte, error) {
	m := b.Manifest
	var manifest []byte
	for _, f := range store.PublicFiles {
		data, err := b.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if f == bundle.ManifestFile {
			manifest = data
		}
		if err := p.createOrSame(ctx, store.FileKey(m.Name, m.ID, f), data, true); err != nil {
			return nil, err
		}
	}
	plain, err := b.ReadFile(bundle.KeyFile)
	if err != nil {
		return nil, err
	}
	enc, err := store.Encrypt(plain, p.Recipients)
	clear(plain)
	if err != nil {
		return nil, err
	}
	// An existing key object for these recipients was written by an
	// earlier publish; its ciphertext differs (age is randomized), and
	// nodes check what it decrypts to against the manifest.
	if err := p.createOrSame(ctx, store.FileKey(m.Name, m.ID, keyObject), enc, false); err != nil {
		return nil, err
	}
	return manifest, nil
}

// createOrSame writes key create-only and reads it back. When the object
// is there already, same says whether it must be identical.
func (p *Publisher) createOrSame(ctx context.Context, key string, data []byte, same bool) error {
	_, err := p.Store.Create(ctx, key, data)
	existed := errors.Is(err, store.ErrPrecondition)
	if err != nil && !existed {
		return fmt.Errorf("write %s: %w", key, err)
	}
	o, err := p.Store.Get(ctx, key, "", int64(bundle.MaxFileSize)+store.MaxObject)
	if err != nil {
		return fmt.Errorf("read back %s: %w", key, err)
	}
	if existed && !same {
		return nil
	}
	if store.SHA256(o.Data) != store.SHA256(data) || !bytes.Equal(o.Data, data) {
		if existed {
			return fmt.Errorf("%w: %s exists with other contents (objects are never overwritten: remove it by hand if it is damaged)", ErrCopyMismatch, key)
		}
		return fmt.Errorf("%w: %s read back with another SHA-256", ErrCopyMismatch, key)
	}
	return nil
}
