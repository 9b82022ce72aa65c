package pull

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/store"
)

func TestLease(t *testing.T) {
	backends(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		if err := ProbeConditional(ctx, w.st, "test-host"); err != nil {
			t.Fatal(err)
		}
		b1 := w.issue(time.Now().Add(-2 * time.Hour))
		w.publish(b1)

		// Ten candidates at once: exactly one wins.
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			winner *Lease
			wctx   context.Context
			held   int
		)
		for i := range 10 {
			wg.Go(func() {
				l, lctx, err := TakeLease(ctx, w.st, name, LeaseOptions{Holder: fmt.Sprintf("c%d", i), TTL: 300 * time.Millisecond})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					if winner != nil {
						t.Error("two candidates won the lease")
					}
					winner, wctx = l, lctx
				case errors.Is(err, ErrLeaseHeld):
					held++
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if winner == nil || held != 9 {
			t.Fatalf("winner %v, %d saw it held; want one winner and 9", winner != nil, held)
		}

		// The winner stalls (its refreshes stop, as if killed); after its
		// expiry another candidate takes over, renews and publishes.
		close(winner.stop)
		<-winner.done
		later := func() time.Time { return time.Now().Add(time.Hour) }
		if _, _, err := TakeLease(ctx, w.st, name, LeaseOptions{Holder: "early", TTL: time.Minute}); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("take a live lease: %v, want ErrLeaseHeld", err)
		}
		next, _, err := TakeLease(ctx, w.st, name, LeaseOptions{Holder: "next", TTL: time.Minute, Now: later})
		if err != nil {
			t.Fatalf("take over an expired lease: %v", err)
		}
		b2 := w.issue(time.Now().Add(-time.Hour))
		if _, err := w.publisher().Publish(ctx, b2, PublishOptions{Fence: next.Fence}); err != nil {
			t.Fatalf("fenced publish by the new holder: %v", err)
		}
		// The stalled one wakes with its own renewal: refused.
		b3 := w.issue(time.Now().Add(-30 * time.Minute))
		if _, err := w.publisher().Publish(wctx, b3, PublishOptions{Fence: winner.Fence}); !errors.Is(err, ErrCurrentMoved) {
			t.Fatalf("late publish by the stalled holder: %v, want ErrCurrentMoved", err)
		}
		if err := next.Release(ctx); err != nil {
			t.Fatal(err)
		}
		// Released: the next candidate takes it at once.
		l, _, err := TakeLease(ctx, w.st, name, LeaseOptions{Holder: "after", TTL: time.Minute, Now: later})
		if err != nil {
			t.Fatalf("take a released lease: %v", err)
		}
		defer l.Release(ctx)
	})
}

// TestLeaseLost: a holder whose lease was taken over sees its refresh
// fail and its context cancelled.
func TestLeaseLost(t *testing.T) {
	w := newWorld(t, nil2file(t))
	ctx := context.Background()
	a, actx, err := TakeLease(ctx, w.st, name, LeaseOptions{Holder: "a", TTL: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Now().Add(time.Hour) }
	b, _, err := TakeLease(ctx, w.st, name, LeaseOptions{Holder: "b", TTL: time.Minute, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(ctx)
	select {
	case <-actx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the old holder's context was not cancelled")
	}
	if !errors.Is(a.Err(), ErrLeaseLost) {
		t.Fatalf("old holder: %v, want ErrLeaseLost", a.Err())
	}
	if err := a.Release(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("release of a lost lease: %v", err)
	}
}

// ignoring is a store that ignores If-None-Match, as some S3-compatible
// servers do: its Create overwrites.
type ignoring struct{ store.Store }

func (s ignoring) Create(ctx context.Context, key string, data []byte) (string, error) {
	return s.Put(ctx, key, data)
}

func TestProbeRefusesAStoreThatIgnoresConditions(t *testing.T) {
	w := newWorld(t, nil2file(t))
	err := ProbeConditional(context.Background(), ignoring{w.st}, "test-host")
	if !errors.Is(err, ErrNoConditionalWrites) {
		t.Fatalf("probe: %v, want ErrNoConditionalWrites", err)
	}
}
