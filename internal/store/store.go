// Package store is the object store of pull mode: an S3-compatible bucket
// (s3://bucket/prefix) or a directory (file:///srv/certstore), behind one
// interface with the conditional operations that publishing, pulling and
// the renewal lease rely on.
//
// Keys are slash-separated paths of letters, digits, '.', '-' and '_'
// (no empty, "." or ".." component); the store's prefix is added by the
// backend. ETags are opaque strings compared for equality only; the
// backends return them without quotes.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// Errors returned by every Store, checked with errors.Is.
var (
	// ErrNotModified: Get's IfNoneMatch matched the object's ETag.
	ErrNotModified = errors.New("not modified")
	// ErrPrecondition: a create-only write found the object there, or a
	// conditional write found another ETag.
	ErrPrecondition = errors.New("precondition failed")
	// ErrTooLarge: the object is larger than the caller's limit.
	ErrTooLarge = errors.New("object too large")
)

// Object is an object read from a store.
type Object struct {
	Data []byte
	ETag string
}

// Store is an object store. Every method is safe for concurrent use, by
// goroutines and by processes on other machines sharing the store; each
// takes a context that bounds it. A missing object is an error wrapping
// fs.ErrNotExist. Writes are atomic: a reader sees the whole old object or
// the whole new one, never a part.
//
//   - Get reads key, at most limit bytes (ErrTooLarge beyond). When
//     ifNoneMatch is not empty and equals the object's ETag it returns
//     ErrNotModified, having transferred no data (S3: one request, 304).
//   - Create writes key only if no object is there (S3 If-None-Match: *);
//     otherwise ErrPrecondition and the object is untouched. Of concurrent
//     creators exactly one succeeds.
//   - Replace writes key only if its ETag is etag (S3 If-Match);
//     otherwise ErrPrecondition (or fs.ErrNotExist when it is missing).
//     Of concurrent replacers of one ETag at most one succeeds.
//   - Put writes key unconditionally (node reports only).
//   - List returns the keys under prefix (a key prefix ending in "/"),
//     sorted, relative to the store, not only direct children.
//
// Create, Replace and Put return the new object's ETag.
type Store interface {
	Get(ctx context.Context, key, ifNoneMatch string, limit int64) (*Object, error)
	Create(ctx context.Context, key string, data []byte) (string, error)
	Replace(ctx context.Context, key string, data []byte, etag string) (string, error)
	Put(ctx context.Context, key string, data []byte) (string, error)
	List(ctx context.Context, prefix string) ([]string, error)
	// String names the store for messages, as its URL.
	String() string
}

// Open opens the store cfg describes. An s3:// store takes its
// credentials from the standard AWS chain (environment, shared config and
// credentials files, instance role), never from the configuration.
func Open(ctx context.Context, cfg *Config) (Store, error) {
	switch {
	case strings.HasPrefix(cfg.URL, "file://"):
		return OpenDir(strings.TrimPrefix(cfg.URL, "file://"))
	case strings.HasPrefix(cfg.URL, "s3://"):
		return openS3(ctx, cfg)
	}
	return nil, fmt.Errorf("store %q: want s3://bucket/prefix or file:///dir", cfg.URL)
}

// CheckKey reports whether key is a valid store key.
func CheckKey(key string) error {
	if key == "" || len(key) > 512 {
		return fmt.Errorf("store key %q: empty or too long", key)
	}
	for _, c := range strings.Split(key, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("store key %q: empty, '.' or '..' component", key)
		}
		for _, r := range c {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				return fmt.Errorf("store key %q: only letters, digits, '.', '-', '_' and '/' are allowed", key)
			}
		}
	}
	return nil
}

// notExist wraps fs.ErrNotExist with the key.
func notExist(key string) error { return fmt.Errorf("object %s: %w", key, fs.ErrNotExist) }

func unquote(etag string) string { return strings.Trim(etag, `"`) }
