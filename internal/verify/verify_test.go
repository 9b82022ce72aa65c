package verify

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/devca"
)

// issue makes a TLS certificate for domains from ca.
func issue(t *testing.T, ca *devca.CA, l devca.Leaf) tls.Certificate {
	t.Helper()
	is, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(append(is.Cert, is.Chain...), is.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCA(t *testing.T) *devca.CA {
	t.Helper()
	ca, err := devca.New("verify-test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// serve starts a TLS server whose certificate pick chooses for each
// handshake, and returns its address.
func serve(t *testing.T, pick func(*tls.ClientHelloInfo) *tls.Certificate) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return pick(hello), nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func fingerprint(c tls.Certificate) string { return SHA256(c.Certificate[0]) }

func TestExpectSettle(t *testing.T) {
	ca := newCA(t)
	oldCert := issue(t, ca, devca.Leaf{Domains: []string{"example.test"}})
	newCert := issue(t, ca, devca.Leaf{Domains: []string{"example.test"}})
	testCases := []struct {
		desc string
		// serves returns the certificate for handshake n (0-based).
		serves  func(n int64) *tls.Certificate
		wantErr error // nil: Expect accepts
		minGood int64 // handshakes Expect must have made at least
	}{
		{desc: "new at once", serves: func(int64) *tls.Certificate { return &newCert }, minGood: 3},
		{desc: "old, then steadily new", serves: func(n int64) *tls.Certificate {
			if n < 2 {
				return &oldCert
			}
			return &newCert
		}, minGood: 5},
		{desc: "old and new in turn", serves: func(n int64) *tls.Certificate {
			if n%2 == 0 {
				return &oldCert
			}
			return &newCert
		}, wantErr: ErrWrongCertificate},
		{desc: "old only", serves: func(int64) *tls.Certificate { return &oldCert }, wantErr: ErrWrongCertificate},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			var n atomic.Int64
			addr := serve(t, func(*tls.ClientHelloInfo) *tls.Certificate { return tc.serves(n.Add(1) - 1) })
			start := time.Now()
			err := Expect(t.Context(), addr, "example.test", strings.ToUpper(fingerprint(newCert)), time.Second)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Expect = %v, want %v", err, tc.wantErr)
			}
			if err == nil && time.Since(start) < Settle {
				t.Errorf("accepted after %s, before Settle (%s)", time.Since(start), Settle)
			}
			if got := n.Load(); got < tc.minGood {
				t.Errorf("%d handshakes, want at least %d", got, tc.minGood)
			}
		})
	}
}

func TestSurveyStates(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	current := issue(t, ca, devca.Leaf{Domains: []string{"example.test"}})
	older := issue(t, ca, devca.Leaf{Domains: []string{"example.test"}})
	expired := issue(t, ca, devca.Leaf{Domains: []string{"example.test"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	other := issue(t, ca, devca.Leaf{Domains: []string{"other.test"}})
	fixed := func(c *tls.Certificate) string {
		return serve(t, func(*tls.ClientHelloInfo) *tls.Certificate { return c })
	}
	testCases := []struct {
		desc    string
		address string
		want    string
	}{
		{desc: "current", address: fixed(&current), want: Aligned},
		{desc: "another valid", address: fixed(&older), want: Stale},
		{desc: "expired", address: fixed(&expired), want: Expired},
		{desc: "another name", address: fixed(&other), want: WrongName},
		{desc: "nothing listening", address: closedAddress(t), want: Unreachable},
	}
	eps := make([]Endpoint, len(testCases))
	for i, tc := range testCases {
		eps[i] = Endpoint{Cert: "example.test", Host: tc.desc, Address: tc.address, SNI: "example.test", Want: fingerprint(current)}
	}
	var calls int
	reports := Survey(t.Context(), eps, 2, time.Second, now, func(done, total int, _ Report) {
		calls++
		if done != calls || total != len(eps) {
			t.Errorf("progress(%d, %d) at call %d", done, total, calls)
		}
	})
	for i, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			r := reports[i]
			if r.Host != tc.desc || r.State != tc.want {
				t.Errorf("report %+v, want host %q state %q", r, tc.desc, tc.want)
			}
			if (r.State == Unreachable) != (r.Error != "") {
				t.Errorf("state %s with error %q", r.State, r.Error)
			}
			if r.State == Aligned && (r.Served != r.Want || r.DaysLeft < 88) {
				t.Errorf("aligned report %+v", r)
			}
		})
	}
}

// closedAddress returns a loopback address where nothing listens.
func closedAddress(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}

func TestProbeSNI(t *testing.T) {
	ca := newCA(t)
	certs := map[string]*tls.Certificate{}
	for _, name := range []string{"a.example.test", "b.example.test"} {
		c := issue(t, ca, devca.Leaf{Domains: []string{name}})
		certs[name] = &c
	}
	fallback := issue(t, ca, devca.Leaf{Domains: []string{"default.test"}})
	var (
		mu   sync.Mutex
		sent []string
	)
	addr := serve(t, func(hello *tls.ClientHelloInfo) *tls.Certificate {
		mu.Lock()
		sent = append(sent, hello.ServerName)
		mu.Unlock()
		if c, ok := certs[hello.ServerName]; ok {
			return c
		}
		return &fallback
	})
	testCases := []struct {
		desc string
		sni  string
		want *tls.Certificate
	}{
		{desc: "first name", sni: "a.example.test", want: certs["a.example.test"]},
		{desc: "second name", sni: "b.example.test", want: certs["b.example.test"]},
		{desc: "unknown name", sni: "c.example.test", want: &fallback},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			s, err := Probe(t.Context(), addr, tc.sni, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if s.Fingerprint != fingerprint(*tc.want) || s.Endpoint != addr {
				t.Errorf("served %s (%v), want %s", s.Fingerprint[:16], s.Leaf.DNSNames, fingerprint(*tc.want)[:16])
			}
			mu.Lock()
			last := sent[len(sent)-1]
			mu.Unlock()
			if last != tc.sni {
				t.Errorf("probe sent SNI %q, want %q", last, tc.sni)
			}
		})
	}
}

func TestDefaultSNI(t *testing.T) {
	testCases := []struct {
		desc    string
		domains []string
		want    string
	}{
		{desc: "plain first", domains: []string{"example.test", "*.example.test"}, want: "example.test"},
		{desc: "wildcard first", domains: []string{"*.example.test", "example.test"}, want: "example.test"},
		{desc: "wildcards only", domains: []string{"*.example.test"}, want: "www.example.test"},
		{desc: "none", want: ""},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if got := DefaultSNI(tc.domains); got != tc.want {
				t.Errorf("DefaultSNI(%v) = %q, want %q", tc.domains, got, tc.want)
			}
		})
	}
}
