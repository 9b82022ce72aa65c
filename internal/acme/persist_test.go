package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/testacme"
	"github.com/certpush/certpush/internal/testlog"
)

// dns-persist-01 against pebble 2.10, which supports it: the records are
// computed before any order, their absence or a wrong value is explained
// and nothing is ordered; once in challtestsrv's DNS, pebble validates
// them, and again with no DNS change.
func TestDNSPersist01(t *testing.T) {
	srv := startModern(t, testacme.Options{})
	c := newClient(t, srv, t.TempDir())
	domains := []string{"persist.example.test", "*.persist.example.test"}
	until := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	var shown []PersistRecord
	req := Request{Domains: domains, Challenge: Challenge{
		Type: DNSPersist01, Wildcard: true, PersistUntil: until,
		Resolvers: []string{srv.DNSAddr}, DisablePropagationCheck: true, PropagationTimeout: 10 * time.Second,
		Records: func(r []PersistRecord) { shown = r },
	}}
	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	name := "_validation-persist.persist.example.test."
	value := "pebble.letsencrypt.org; accounturi=" + c.AccountURI() + "; policy=wildcard; persistUntil=" + strconv.FormatInt(until.Unix(), 10)

	_, err := c.Obtain(ctx, req)
	if !errors.Is(err, ErrPersistRecord) || !strings.Contains(err.Error(), "resolver "+srv.DNSAddr+": no TXT record at "+name) {
		t.Fatalf("without the record: %v", err)
	}
	if len(shown) != 1 || shown[0].Name != name || shown[0].Value != value || len(shown[0].Domains) != 2 {
		t.Fatalf("records shown %+v, want one %s %q", shown, name, value)
	}
	if !strings.HasPrefix(c.AccountURI(), srv.DirectoryURL[:strings.LastIndex(srv.DirectoryURL, "/")]) {
		t.Errorf("account URI %q is not pebble's", c.AccountURI())
	}

	// Another account's record, without the wildcard policy.
	if err := srv.SetTXT(ctx, name, "pebble.letsencrypt.org; accounturi=https://elsewhere.test/acct/1"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Obtain(ctx, req)
	for _, want := range []string{`accounturi is "https://elsewhere.test/acct/1", this account's is "` + c.AccountURI() + `"`, "policy=wildcard is missing", "persistUntil differs"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("with a wrong record: %v, want it to say %s", err, want)
		}
	}
	if n := logCount(t, srv, testacme.LogNewOrder); n != 0 {
		t.Errorf("pebble saw %d orders while the record was missing, want none", n)
	}

	if err := srv.ClearTXT(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetTXT(ctx, name, value); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		got := obtain(t, c, req)
		validate(t, srv, got, domains)
		if n := logCount(t, srv, testacme.LogNewOrder); n != i+1 {
			t.Errorf("pebble saw %d orders, want %d", n, i+1)
		}
	}
	txt, err := srv.Resolver().LookupTXT(ctx, name)
	if err != nil || len(txt) != 1 || txt[0] != value {
		t.Errorf("record changed: %q, %v", txt, err)
	}
}

func TestPersistRecordsAndCheck(t *testing.T) {
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := PersistRecords([]string{"a.test", "*.a.test", "b.test"}, "ca.test", "https://ca.test/acct/7", false, until)
	if len(recs) != 2 || recs[0].Name != "_validation-persist.a.test." || recs[1].Name != "_validation-persist.b.test." ||
		recs[0].Value != "ca.test; accounturi=https://ca.test/acct/7; persistUntil=1893456000" {
		t.Fatalf("records %+v", recs)
	}
	if got := recs[0].String(); got != `_validation-persist.a.test. IN TXT "ca.test; accounturi=https://ca.test/acct/7; persistUntil=1893456000"` {
		t.Errorf("zone line %s", got)
	}
	zone := map[string][]string{}
	lookup := func(_ context.Context, res, name string) ([]string, error) {
		if res == "down:53" {
			return nil, errors.New("i/o timeout")
		}
		if v, ok := zone[name]; ok {
			return v, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	now := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	zone["_validation-persist.a.test."] = []string{"CA.test.;accounturi=https://ca.test/acct/7 ; persistuntil=1893456000"}
	zone["_validation-persist.b.test."] = []string{"ca.test; accounturi=https://ca.test/acct/7; persistUntil=1893456000"}
	err := CheckPersistRecords(context.Background(), recs, []string{"r1:53"}, now, lookup)
	if err == nil || !strings.Contains(err.Error(), "policy=wildcard is missing (needed for a.test, *.a.test)") {
		t.Errorf("a wildcard name without the policy: %v", err)
	}
	wild := PersistRecords([]string{"a.test", "*.a.test"}, "ca.test", "https://ca.test/acct/7", true, until)
	zone["_validation-persist.a.test."] = []string{"other.test; accounturi=x", wild[0].Value}
	if err := CheckPersistRecords(context.Background(), wild, []string{"r1:53", "r2:53"}, now, lookup); err != nil {
		t.Errorf("records in place: %v", err)
	}
	err = CheckPersistRecords(context.Background(), wild, []string{"r1:53", "down:53"}, until.Add(time.Second), lookup)
	for _, want := range []string{"persistUntil 2030-01-01T00:00:00Z has passed", "resolver down:53: looking up _validation-persist.a.test.: i/o timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to say %s", err, want)
		}
	}
	delete(zone, "_validation-persist.a.test.")
	if err := CheckPersistRecords(context.Background(), wild, []string{"r1:53"}, now, lookup); err == nil || !strings.Contains(err.Error(), "resolver r1:53: no TXT record at _validation-persist.a.test.") {
		t.Errorf("missing record: %v", err)
	}
	if _, err := issuerFor("nope.test", []string{"ca.test"}); !errors.Is(err, ErrConfig) {
		t.Errorf("issuer not offered: %v", err)
	}
	if got, _ := issuerFor("", []string{"z.test", "b.test"}); got != "b.test" {
		t.Errorf("issuer %q, want the first in order", got)
	}
}

// A CA without ARI: remembered for an hour, then asked again.
func TestCachedRenewalInfoNoARI(t *testing.T) {
	var srvURL string
	dirHits := 0
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dir" {
			http.NotFound(w, r)
			return
		}
		dirHits++
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"newNonce":%q,"newAccount":%q,"newOrder":%q}`, srvURL+"/nonce", srvURL+"/acct", srvURL+"/order")
	}))
	ts.StartTLS()
	t.Cleanup(ts.Close)
	srvURL = ts.URL
	c := &Client{cfg: Config{Directory: srvURL + "/dir", StateDir: t.TempDir(), HTTPTimeout: 5 * time.Second}, log: testlog.Logger(t), base: ts.Client().Transport}
	key, err := loadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	c.acct = &account{key: key}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(0x1234), AuthorityKeyId: []byte{1, 2}}
	path := ARIStatePath(c.cfg.StateDir, "x")
	now := time.Now()
	res, err := c.CachedRenewalInfo(t.Context(), path, leaf, now)
	if !errors.Is(err, ErrNoARI) || !res.Asked || res.Window != nil {
		t.Fatalf("first: %+v, %v", res, err)
	}
	st, err := LoadARIState(path)
	if err != nil || st == nil || !st.NoARI || st.Serial != "1234" {
		t.Fatalf("state %+v, %v", st, err)
	}
	hits := dirHits
	res, err = c.CachedRenewalInfo(t.Context(), path, leaf, now.Add(30*time.Minute))
	if err != nil || res.Asked || res.Window != nil || dirHits != hits {
		t.Errorf("within the hour: %+v, %v, directory hits %d -> %d", res, err, hits, dirHits)
	}
	res, err = c.CachedRenewalInfo(t.Context(), path, leaf, now.Add(2*time.Hour))
	if !errors.Is(err, ErrNoARI) || !res.Asked || dirHits == hits {
		t.Errorf("after the hour: %+v, %v", res, err)
	}
	// Another certificate is always asked about.
	other := &x509.Certificate{SerialNumber: big.NewInt(0x99), AuthorityKeyId: []byte{1, 2}}
	if res, _ := c.CachedRenewalInfo(t.Context(), path, other, now); !res.Asked {
		t.Error("a new certificate was not asked about")
	}
}

func TestDefaultThreshold(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct{ life, want time.Duration }{
		{90 * day, 30 * day}, {45 * day, 15 * day}, {11 * day, 11 * day / 3},
		{10 * day, 5 * day}, {160 * time.Hour, 80 * time.Hour}, {3 * time.Minute, 90 * time.Second},
	} {
		if got := DefaultThreshold(tc.life); got != tc.want {
			t.Errorf("DefaultThreshold(%s) = %s, want %s", tc.life, got, tc.want)
		}
	}
	now := time.Now()
	six := &x509.Certificate{NotBefore: now.Add(-79 * time.Hour), NotAfter: now.Add(81 * time.Hour)}
	if d := Due(six, 0, nil, now); d.Due {
		t.Errorf("six-day certificate with 81h left due: %s", d.Reason)
	}
	six = &x509.Certificate{NotBefore: now.Add(-81 * time.Hour), NotAfter: now.Add(79 * time.Hour)}
	if d := Due(six, 0, nil, now); !d.Due || d.Threshold != 80*time.Hour {
		t.Errorf("six-day certificate with 79h left: %+v", d)
	}
}
