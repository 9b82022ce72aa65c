package push

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/acme/http01"
)

func TestWebroot(t *testing.T) {
	f := newFixture(t, 2)
	d, err := NewDialer([]ssh.AuthMethod{ssh.PublicKeys(f.client)}, f.known, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	hosts := f.inventory()
	// The second host has a webroot of its own.
	hosts[1].Webroot = filepath.Join(f.hosts[1].incoming, "own")
	w := &Webroot{Dialer: d, Hosts: hosts, Webroot: filepath.Join(f.hosts[0].incoming, "www"), Parallel: 2}
	files := []string{
		filepath.Join(w.Webroot, http01.ChallengePath("tok-1")),
		filepath.Join(hosts[1].Webroot, http01.ChallengePath("tok-1")),
	}

	if err := w.Publish(t.Context(), "tok-1", []byte("tok-1.thumb")); err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil || string(data) != "tok-1.thumb" {
			t.Errorf("%s: %q %v", file, data, err)
		}
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v %v", file, fi.Mode(), err)
		}
	}
	for range 2 { // a second Unpublish finds nothing, and that is fine
		if err := w.Unpublish(t.Context(), "tok-1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, file := range files {
		if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Unpublish: %v", file, err)
		}
	}

	testCases := []struct {
		desc  string
		token string
	}{
		{desc: "traversal", token: "../../etc/x"},
		{desc: "empty", token: ""},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if err := w.Publish(t.Context(), tc.token, nil); !errors.Is(err, errBadToken) {
				t.Errorf("Publish(%q) = %v, want errBadToken", tc.token, err)
			}
			if err := w.Unpublish(t.Context(), tc.token); !errors.Is(err, errBadToken) {
				t.Errorf("Unpublish(%q) = %v, want errBadToken", tc.token, err)
			}
		})
	}
}
