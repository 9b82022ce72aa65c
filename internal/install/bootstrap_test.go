package install

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
)

func TestBootstrapPlaceholder(t *testing.T) {
	n := newNode(t, nodeOptions{})
	name := "example.com"
	r, err := n.in.Bootstrap(context.Background(), name, time.Hour)
	if err != nil || r.Result != Installed {
		t.Fatalf("Bootstrap = %+v, %v", r, err)
	}
	n.wantLive(name, r.ID)
	st, _ := n.in.Check(0)
	if !st[0].Placeholder || !strings.Contains(st[0].Problem, "placeholder") {
		t.Errorf("check after bootstrap: %+v", st[0])
	}

	// A pushed bundle that claims to be a placeholder is refused: only
	// the node makes those, and the downgrade check skips them.
	b := n.bundle(name, bundleOptions{noPush: true})
	b.m.Source = bundle.SourcePlaceholder
	if err := n.signer.Sign(b.m); err != nil {
		t.Fatal(err)
	}
	n.push(b)
	res := n.installOne(name, Options{}, Refused)
	if !strings.Contains(res.Error, "claims to be a bootstrap placeholder") {
		t.Errorf("refusal: %s", res.Error)
	}
	n.wantLive(name, r.ID)

	// A real one issued a day before the placeholder replaces it.
	old := n.bundle(name, bundleOptions{notBefore: time.Now().Add(-24 * time.Hour)})
	n.installOne(name, Options{}, Installed)
	n.wantLive(name, old.id)
	if r, err := n.in.Bootstrap(context.Background(), name, time.Hour); err != nil || r.Result != Unchanged || r.ID != old.id {
		t.Errorf("Bootstrap over a real certificate = %+v, %v", r, err)
	}
	n.wantLive(name, old.id)
}
