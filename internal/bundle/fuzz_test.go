package bundle_test

import (
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
)

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"name":"example.com","id":"0123456789abcdef","files":{}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := bundle.ParseManifest(data)
		if err != nil {
			return
		}
		if bundle.ValidName(m.Name) != nil || len(m.ID) != 16 || len(m.Files) != len(bundle.Files) {
			t.Fatalf("accepted an invalid manifest: %+v", m)
		}
		if _, err := m.SignedBytes(); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseMaterial(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), []byte(""), []byte("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, cert, chain, key []byte) {
		m, err := bundle.ParseMaterial(cert, chain, key)
		if err != nil {
			return
		}
		if m.Leaf == nil || m.Key == nil {
			t.Fatal("accepted material without leaf or key")
		}
		_ = m.Validate(nil, time.Now())
	})
}
