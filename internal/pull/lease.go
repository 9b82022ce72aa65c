package pull

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/certpush/certpush/internal/store"
)

// The renewal lease. <name>/lease holds LeaseRecord. A candidate takes it
// with a create-only write (If-None-Match: *); once the holder's expiry
// has passed (or it released the lease, which sets the expiry to the
// release time), another takes it over with a write conditional on the
// ETag it read (If-Match). Of candidates racing for one lease exactly one
// write succeeds: the store decides. The holder refreshes the lease
// (If-Match on its own last ETag) while it works and loses it when a
// refresh fails. What it publishes is fenced on the ETag current had
// when it took the lease, so a holder that stalled past its lease and
// woke after another renewed cannot move current.

// Errors of the lease, checked with errors.Is.
var (
	// ErrLeaseHeld: another candidate holds the lease.
	ErrLeaseHeld = errors.New("lease held by another candidate")
	// ErrLeaseLost: a refresh failed; the work must stop.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNoConditionalWrites: the store does not refuse a second
	// create-only write, so leases cannot work on it.
	ErrNoConditionalWrites = errors.New("the store does not honour conditional writes")
)

// LeaseRecord is what the lease object holds.
type LeaseRecord struct {
	Holder  string    `json:"holder"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// Lease is a lease this process holds.
type Lease struct {
	st     store.Store
	key    string
	rec    LeaseRecord
	ttl    time.Duration
	now    func() time.Time
	log    *slog.Logger
	mu     sync.Mutex
	etag   string
	lost   error
	stop   chan struct{}
	done   chan struct{}
	cancel context.CancelFunc
	// Fence is what to pass as PublishOptions.Fence: current's ETag
	// when the lease was taken.
	Fence string
}

// LeaseOptions configure TakeLease.
type LeaseOptions struct {
	Holder string        // who is taking it (host name), for messages
	TTL    time.Duration // how long the lease lasts without a refresh
	Now    func() time.Time
	Logger *slog.Logger
}

// HeldError is ErrLeaseHeld with who holds it until when.
type HeldError struct {
	Holder  string
	Expires time.Time
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%v: %s holds it until %s", ErrLeaseHeld, e.Holder, e.Expires.UTC().Format(time.RFC3339))
}

func (e *HeldError) Unwrap() error { return ErrLeaseHeld }

// TakeLease takes name's lease or fails with a *HeldError. It reads
// current first, so the lease's Fence is what current was before the
// lease was won. The returned context is cancelled when the lease is
// lost; Release ends it.
func TakeLease(ctx context.Context, st store.Store, name string, o LeaseOptions) (*Lease, context.Context, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	fence := FenceNone
	cur, err := st.Get(ctx, store.CurrentKey(name), "", store.MaxObject)
	switch {
	case err == nil:
		fence = cur.ETag
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("%s: read current: %w", name, err)
	}
	var tok [12]byte
	rand.Read(tok[:])
	l := &Lease{st: st, key: store.LeaseKey(name), ttl: o.TTL, now: o.Now, log: o.Logger, Fence: fence,
		rec: LeaseRecord{Holder: o.Holder, Token: hex.EncodeToString(tok[:])}}
	l.rec.Expires = o.Now().Add(o.TTL).UTC()
	data, _ := json.Marshal(l.rec)
	tag, err := st.Create(ctx, l.key, data)
	if errors.Is(err, store.ErrPrecondition) {
		tag, err = l.takeOver(ctx, data)
	}
	if err != nil {
		return nil, nil, err
	}
	l.etag = tag
	lctx, cancel := context.WithCancel(ctx)
	l.cancel, l.stop, l.done = cancel, make(chan struct{}), make(chan struct{})
	go l.refresh(lctx)
	return l, lctx, nil
}

// takeOver replaces an expired lease, conditionally on the ETag it read.
func (l *Lease) takeOver(ctx context.Context, data []byte) (string, error) {
	o, err := l.st.Get(ctx, l.key, "", store.MaxObject)
	if err != nil {
		return "", fmt.Errorf("read lease: %w", err)
	}
	var old LeaseRecord
	if json.Unmarshal(o.Data, &old) == nil && l.now().Before(old.Expires) {
		return "", &HeldError{old.Holder, old.Expires}
	}
	tag, err := l.st.Replace(ctx, l.key, data, o.ETag)
	if errors.Is(err, store.ErrPrecondition) || errors.Is(err, fs.ErrNotExist) {
		// Another candidate took it over first.
		return "", &HeldError{"another candidate", l.rec.Expires}
	}
	return tag, err
}

// refresh extends the lease every third of its TTL.
func (l *Lease) refresh(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		rec := l.rec
		rec.Expires = l.now().Add(l.ttl).UTC()
		data, _ := json.Marshal(rec)
		tag, err := l.st.Replace(ctx, l.key, data, l.etag)
		if err != nil {
			l.lost = fmt.Errorf("%w: refresh: %w", ErrLeaseLost, err)
			l.mu.Unlock()
			l.log.Warn("lease lost", "lease", l.key, "error", err)
			l.cancel()
			return
		}
		l.etag, l.rec = tag, rec
		l.mu.Unlock()
	}
}

// Err is ErrLeaseLost (wrapped) once a refresh failed, else nil.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Release stops the refreshes and ends the lease (its expiry set to now,
// conditionally on the holder's last ETag, so a lease already taken over
// is left alone).
func (l *Lease) Release(ctx context.Context) error {
	close(l.stop)
	<-l.done
	l.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	rec := l.rec
	rec.Expires = l.now().UTC()
	data, _ := json.Marshal(rec)
	_, err := l.st.Replace(ctx, l.key, data, l.etag)
	return err
}

// ProbeConditional checks that st refuses a create-only write of a key
// that exists (some S3-compatible servers ignore If-None-Match): without
// that, leases and fenced publishing cannot work. It writes
// .probe/<who> (then tries to create it again), so repeated probes
// leave one small object per candidate.
func ProbeConditional(ctx context.Context, st store.Store, who string) error {
	key := ".probe/" + who
	if store.CheckKey(key) != nil || strings.Count(key, "/") != 1 {
		return fmt.Errorf("probe: %q is not a valid name", who)
	}
	if _, err := st.Put(ctx, key, []byte("probe")); err != nil {
		return fmt.Errorf("probe %s: %w", st, err)
	}
	_, err := st.Create(ctx, key, []byte("must be refused"))
	if errors.Is(err, store.ErrPrecondition) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("probe %s: %w", st, err)
	}
	return fmt.Errorf("%w: %s accepted a create-only write of %s, which exists: use a store that refuses it (AWS S3, MinIO, versitygw) for renew --lease", ErrNoConditionalWrites, st, key)
}
