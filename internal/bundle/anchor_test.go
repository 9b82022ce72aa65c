package bundle_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
)

func TestAnchorCheck(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	good := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}})
	self, err := devca.SelfSigned(devca.Leaf{Domains: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	testCases := []struct {
		desc   string
		is     *devca.Issued
		noInt  bool // leave the intermediate out
		anchor bundle.Anchor
		want   string // "" for accepted; else a part of the error
	}{
		{desc: "chain to the configured root", is: good, anchor: bundle.Anchor{Roots: ca.Pool()}},
		{desc: "another CA's root", is: good, anchor: bundle.Anchor{Roots: other.Pool()}, want: "configured roots"},
		{desc: "intermediate missing", is: good, noInt: true, anchor: bundle.Anchor{Roots: ca.Pool()}, want: "unknown authority"},
		{desc: "private CA against the system roots", is: good, want: "roots:"},
		{desc: "self-signed refused", is: self, anchor: bundle.Anchor{Roots: ca.Pool()}, want: "allow_self_signed: true"},
		{desc: "self-signed refused by the system roots", is: self, want: "self-signed"},
		{desc: "self-signed allowed", is: self, anchor: bundle.Anchor{AllowSelfSigned: true}},
		{desc: "allow_self_signed does not admit an untrusted chain", is: good, anchor: bundle.Anchor{Roots: other.Pool(), AllowSelfSigned: true}, want: "configured roots"},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			chain := tc.is.Chain
			if tc.noInt {
				chain = nil
			}
			mat, err := bundle.ParseMaterial(tc.is.Cert, chain, tc.is.Key)
			if err != nil {
				t.Fatal(err)
			}
			err = tc.anchor.Check(mat.Leaf, mat.Chain, now)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check = %v, want accepted", err)
			case tc.want != "" && (!errors.Is(err, bundle.ErrUntrusted) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check = %v, want ErrUntrusted with %q", err, tc.want)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	ca := newCA(t)
	self, err := devca.SelfSigned(devca.Leaf{Domains: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if !bundle.SelfSigned(self.Leaf) {
		t.Error("a self-signed leaf is not reported self-signed")
	}
	if bundle.SelfSigned(issue(t, ca, devca.Leaf{Domains: []string{"example.com"}}).Leaf) {
		t.Error("a CA-issued leaf is reported self-signed")
	}
	if !bundle.SelfSigned(ca.Root) {
		t.Error("a root is not reported self-signed")
	}
}

func TestLoadRoots(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}})
	testCases := []struct {
		desc string
		path string
		want string
	}{
		{"one root", write("root.pem", ca.RootPEM()), ""},
		{"empty", write("empty.pem", nil), "no PEM certificate"},
		{"a key in it", write("key.pem", append(ca.RootPEM(), leaf.Key...)), "PRIVATE KEY block"},
		{"garbage certificate", write("bad.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")), "certificate 1"},
		{"missing", filepath.Join(dir, "nope.pem"), "no such file"},
		{"a directory", dir, "not a regular file"},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			pool, err := bundle.LoadRoots(tc.path)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				mat, err := bundle.ParseMaterial(leaf.Cert, leaf.Chain, leaf.Key)
				if err != nil {
					t.Fatal(err)
				}
				if err := (bundle.Anchor{Roots: pool}).Check(mat.Leaf, mat.Chain, time.Now()); err != nil {
					t.Fatalf("the loaded root does not anchor its leaf: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadRoots = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestStoreAddRefusesUntrusted(t *testing.T) {
	ca := newCA(t)
	st, signer := newStore(t)
	self, err := devca.SelfSigned(devca.Leaf{Domains: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	mat, err := bundle.ParseMaterial(self.Cert, nil, self.Key)
	if err != nil {
		t.Fatal(err)
	}
	opts := bundle.AddOptions{Domains: []string{"example.com"}, Source: bundle.SourceImport, Signer: signer, Now: time.Now(), Anchor: bundle.Anchor{Roots: ca.Pool()}}
	_, _, err = st.Add("example.com", mat, opts)
	var refused *bundle.RefusedError
	if !errors.As(err, &refused) || !errors.Is(err, bundle.ErrUntrusted) {
		t.Fatalf("Add of a self-signed certificate = %v, want a refusal", err)
	}
	if entries, _ := os.ReadDir(st.Dir); len(entries) != 0 {
		t.Fatalf("a refused certificate left %d entries in the store", len(entries))
	}
	opts.Anchor.AllowSelfSigned = true
	if _, created, err := st.Add("example.com", mat, opts); err != nil || !created {
		t.Fatalf("Add with allow_self_signed = %v, created %v", err, created)
	}
}
