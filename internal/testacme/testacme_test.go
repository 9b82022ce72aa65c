package testacme

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func start(t *testing.T) *Server {
	t.Helper()
	if err := Available(Options{}); errors.Is(err, ErrMissing) {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	s, err := Start(context.Background(), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestServer(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(s.Root) == 0 || len(s.Intermediate) == 0 {
		t.Fatal("no root or intermediate")
	}
	if _, err := s.HTTPClient().Get(s.DirectoryURL); err != nil {
		t.Fatalf("directory over HTTPS with the listener CA: %v", err)
	}

	r := s.Resolver()
	addrs, err := r.LookupHost(ctx, "anything.example.test")
	if err != nil || !slices.Equal(addrs, []string{"127.0.0.1"}) {
		t.Fatalf("default A: %v, %v", addrs, err)
	}
	if err := s.AddA(ctx, "other.example.test", "127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if addrs, err := r.LookupHost(ctx, "other.example.test"); err != nil || !slices.Equal(addrs, []string{"127.0.0.2"}) {
		t.Fatalf("added A: %v, %v", addrs, err)
	}

	// The exec script, as lego's exec provider runs it.
	script, err := s.ExecScript(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const name = "_acme-challenge.example.test."
	for _, v := range []string{"one", "two"} {
		if out, err := exec.Command(script, "present", name, v).CombinedOutput(); err != nil {
			t.Fatalf("present: %v: %s", err, out)
		}
	}
	txt, err := r.LookupTXT(ctx, name)
	slices.Sort(txt)
	if err != nil || !slices.Equal(txt, []string{"one", "two"}) {
		t.Fatalf("TXT after present: %v, %v", txt, err)
	}
	if out, err := exec.Command(script, "cleanup", name, "one").CombinedOutput(); err != nil {
		t.Fatalf("cleanup: %v: %s", err, out)
	}
	if txt, err := r.LookupTXT(ctx, name); err == nil && len(txt) > 0 {
		t.Fatalf("TXT after cleanup: %v", txt)
	}
	if out, err := exec.Command(script, "bogus").CombinedOutput(); err == nil {
		t.Fatalf("bogus command succeeded: %s", out)
	}

	if err := s.SetTXT(ctx, name, "three"); err != nil {
		t.Fatal(err)
	}
	if txt, err := r.LookupTXT(ctx, name); err != nil || !slices.Equal(txt, []string{"three"}) {
		t.Fatalf("SetTXT: %v, %v", txt, err)
	}
	if err := s.ClearTXT(ctx, name); err != nil {
		t.Fatal(err)
	}
}
