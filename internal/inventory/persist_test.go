package inventory

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseProfileAndPersist(t *testing.T) {
	cfg, err := Parse("certpush.yaml", []byte(`acme:
  profile: tlsserver
certs:
  a:
    domains: [a.example, "*.a.example"]
    profile: shortlived
    challenge:
      type: dns-persist-01
      wildcard: true
      persist_until: 2030-01-02
      issuer_domain_name: LetsEncrypt.org.
      resolvers: ["127.0.0.1:53"]
  b:
    domains: [b.example]
    challenge: {type: dns-persist-01, persist_until: "2030-01-02T03:04:05+01:00"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ACME.Profile != "tlsserver" || cfg.Certs["a"].Profile != "shortlived" || cfg.Certs["b"].Profile != "" {
		t.Errorf("profiles: acme %q, a %q, b %q", cfg.ACME.Profile, cfg.Certs["a"].Profile, cfg.Certs["b"].Profile)
	}
	a := cfg.Certs["a"].Challenge
	want := &Challenge{Type: ChallengeDNSPersist01, Wildcard: true, PersistUntil: time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC), IssuerDomainName: "letsencrypt.org", Resolvers: []string{"127.0.0.1:53"}}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("a's challenge %+v, want %+v", a, want)
	}
	if b := cfg.Certs["b"].Challenge; !b.PersistUntil.Equal(time.Date(2030, 1, 2, 2, 4, 5, 0, time.UTC)) || b.Wildcard {
		t.Errorf("b's challenge %+v", b)
	}
}

func TestParsePersistErrors(t *testing.T) {
	_, err := Parse("certpush.yaml", []byte(`certs:
  a:
    domains: ["*.a.example"]
    profile: "short lived"
    challenge: {type: dns-persist-01, provider: exec, persist_until: soon, issuer_domain_name: "x; y"}
  b:
    domains: [b.example]
    challenge: {type: dns-01, provider: exec, wildcard: true}
`))
	if err == nil {
		t.Fatal("no error")
	}
	got := errorLines(t, err)
	want := []string{
		`certpush.yaml:2: certs.a: wildcard name *.a.example needs challenge.wildcard: true (policy=wildcard in the dns-persist-01 record)`,
		`certpush.yaml:4: certs.a.profile: bad profile name "short lived" (a name the CA's directory lists, e.g. classic, tlsserver, shortlived)`,
		`certpush.yaml:5: certs.a.challenge.persist_until: "soon" is not a time: want 2027-06-30 or 2027-06-30T00:00:00Z`,
		`certpush.yaml:5: certs.a.challenge.issuer_domain_name: bad issuer domain name "x; y"`,
		`certpush.yaml:5: certs.a.challenge.provider: only applies to dns-01`,
		`certpush.yaml:8: certs.b.challenge.wildcard: only applies to dns-persist-01`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
