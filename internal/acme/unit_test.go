package acme

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/challenge"
	legolog "github.com/go-acme/lego/v5/log"
)

func TestDue(t *testing.T) {
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	// cert returns a 90-day certificate issued `age` ago.
	cert := func(age time.Duration) *x509.Certificate {
		nb := now.Add(-age)
		return &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(90 * day)}
	}
	window := func(from, to time.Duration) *RenewalWindow {
		return &RenewalWindow{Start: now.Add(from), End: now.Add(to)}
	}
	for _, tc := range []struct {
		desc        string
		cert        *x509.Certificate
		renewBefore time.Duration
		ari         *RenewalWindow
		due         bool
		reason      string
		renewAt     time.Time
	}{
		{desc: "fresh, explicit threshold", cert: cert(day), renewBefore: 30 * day, due: false, reason: "valid for", renewAt: now.Add(-day + 60*day)},
		{desc: "inside explicit threshold", cert: cert(61 * day), renewBefore: 30 * day, due: true, reason: "below the renewal threshold"},
		{desc: "exactly at threshold is not below it", cert: cert(60 * day), renewBefore: 30 * day, due: false},
		{desc: "default threshold one third, before", cert: cert(59 * day), due: false, renewAt: now.Add(day)},
		{desc: "default threshold one third, after", cert: cert(61 * day), due: true, reason: "below the renewal threshold of 30 days"},
		{desc: "expired", cert: cert(91 * day), renewBefore: day, due: true, reason: "expired"},
		{desc: "ARI window in the past", cert: cert(10 * day), renewBefore: 30 * day, ari: window(-2*day, -day), due: true, reason: "past the CA's renewal window"},
		{desc: "inside ARI window", cert: cert(10 * day), renewBefore: 30 * day, ari: window(-time.Hour, day), due: true, reason: "inside the CA's renewal window"},
		{desc: "ARI window in the future", cert: cert(10 * day), renewBefore: 30 * day, ari: window(day, 2*day), due: false, renewAt: now.Add(day)},
		{desc: "threshold wins over a later ARI window", cert: cert(70 * day), renewBefore: 30 * day, ari: window(5*day, 6*day), due: true, reason: "below the renewal threshold"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			d := Due(tc.cert, tc.renewBefore, tc.ari, now)
			if d.Due != tc.due {
				t.Fatalf("Due = %v (%s), want %v", d.Due, d.Reason, tc.due)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", d.Reason, tc.reason)
			}
			if !tc.renewAt.IsZero() && !d.RenewAt.Equal(tc.renewAt) {
				t.Errorf("RenewAt = %s, want %s", d.RenewAt, tc.renewAt)
			}
			if d.ARI != (tc.ari != nil) {
				t.Errorf("ARI = %v", d.ARI)
			}
		})
	}
}

func TestAccountDir(t *testing.T) {
	for _, tc := range []struct {
		desc, dir, email, want string
	}{
		{desc: "letsencrypt", dir: "https://acme-v02.api.letsencrypt.org/directory", email: "ops@example.com", want: "/s/acme/acme-v02.api.letsencrypt.org_directory/ops@example.com"},
		{desc: "port and no email", dir: "https://127.0.0.1:14000/dir", want: "/s/acme/127.0.0.1_14000_dir/default"},
		{desc: "hostile email", dir: "https://ca.test/", email: "../../etc", want: "/s/acme/ca.test/.._.._etc"},
		{desc: "dots only", dir: "https://ca.test/", email: "..", want: "/s/acme/ca.test/_.."},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := accountDir("/s", tc.dir, tc.email)
			if err != nil || got != tc.want {
				t.Fatalf("accountDir = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := accountDir("/s", "not a url", ""); err == nil {
		t.Fatal("accepted a directory without host")
	}
}

func TestCheckRequest(t *testing.T) {
	pub := &dirPublisher{}
	dns := Challenge{Type: DNS01, Provider: "exec"}
	for _, tc := range []struct {
		desc string
		req  Request
		ok   bool
	}{
		{desc: "dns-01 wildcard", req: Request{Domains: []string{"*.a.test", "a.test"}, Challenge: dns}, ok: true},
		{desc: "webroot-push", req: Request{Domains: []string{"a.test"}, Challenge: Challenge{Type: HTTP01, Mode: ModeWebrootPush, Publisher: pub}}, ok: true},
		{desc: "standalone", req: Request{Domains: []string{"a.test"}, KeyType: "RSA4096", Challenge: Challenge{Type: HTTP01, Mode: ModeStandalone, Address: ":8402"}}, ok: true},
		{desc: "no domains", req: Request{Challenge: dns}},
		{desc: "bad key type", req: Request{Domains: []string{"a.test"}, KeyType: "ed25519", Challenge: dns}},
		{desc: "no challenge type", req: Request{Domains: []string{"a.test"}}},
		{desc: "unknown challenge type", req: Request{Domains: []string{"a.test"}, Challenge: Challenge{Type: "tls-alpn-01"}}},
		{desc: "dns-01 without provider", req: Request{Domains: []string{"a.test"}, Challenge: Challenge{Type: DNS01}}},
		{desc: "wildcard by http-01", req: Request{Domains: []string{"*.a.test"}, Challenge: Challenge{Type: HTTP01, Mode: ModeStandalone, Address: ":80"}}},
		{desc: "webroot-push without publisher", req: Request{Domains: []string{"a.test"}, Challenge: Challenge{Type: HTTP01, Mode: ModeWebrootPush}}},
		{desc: "standalone without port", req: Request{Domains: []string{"a.test"}, Challenge: Challenge{Type: HTTP01, Mode: ModeStandalone, Address: "127.0.0.1"}}},
		{desc: "unknown http-01 mode", req: Request{Domains: []string{"a.test"}, Challenge: Challenge{Type: HTTP01, Mode: "webroot"}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := CheckRequest(tc.req)
			if tc.ok && err != nil {
				t.Fatalf("CheckRequest: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrConfig) {
				t.Fatalf("CheckRequest = %v, want ErrConfig", err)
			}
		})
	}
}

func TestDNSProviderByName(t *testing.T) {
	t.Setenv("EXEC_PATH", "")
	t.Setenv("CLOUDFLARE_DNS_API_TOKEN", "")
	t.Setenv("CF_DNS_API_TOKEN", "")
	for _, name := range []string{"no-such-provider", "exec", "cloudflare"} {
		if _, err := dnsProvider(name); !errors.Is(err, ErrConfig) {
			t.Errorf("%s without credentials: %v, want ErrConfig", name, err)
		}
	}
	t.Setenv("CLOUDFLARE_DNS_API_TOKEN", "token")
	if p, err := dnsProvider("cloudflare"); err != nil || p == nil {
		t.Errorf("cloudflare with a token: %v", err)
	}
	// withTimeout keeps the provider's sequential behaviour.
	t.Setenv("EXEC_PATH", "/bin/true")
	t.Setenv("EXEC_SEQUENCE_INTERVAL", "7")
	p, err := dnsProvider("exec")
	if err != nil {
		t.Fatal(err)
	}
	w := withTimeout(p, 42*time.Second)
	s, ok := w.(interface{ Sequential() time.Duration })
	if !ok || s.Sequential() != 7*time.Second {
		t.Errorf("wrapped exec provider lost Sequential")
	}
	if to, ok := w.(challenge.ProviderTimeout); !ok {
		t.Error("no Timeout")
	} else if timeout, _ := to.Timeout(); timeout != 42*time.Second {
		t.Errorf("timeout %s", timeout)
	}
}

// Providers left out of the build are refused with the reason; lego's
// other names for a provider still work.
func TestDNSProviderExcluded(t *testing.T) {
	for _, name := range excludedProviders {
		_, err := dnsProvider(name)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "not included in this build") {
			t.Errorf("%s: %v, want ErrConfig saying it is not included", name, err)
		}
	}
	t.Setenv("RFC2136_NAMESERVER", "127.0.0.1:53")
	for _, name := range []string{"rfc2136", "dnsupdate"} {
		if p, err := dnsProvider(name); err != nil || p == nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// lego's info lines become debug lines tagged component=lego; its
// warnings stay warnings.
func TestLegoLogLevels(t *testing.T) {
	var buf strings.Builder
	setLegoLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { setLegoLogger(nil) })
	legolog.Info("step one", slog.String("domain", "a.example"))
	legolog.Warn("careful")
	out := buf.String()
	for _, want := range []string{`level=DEBUG msg="step one" component=lego domain=a.example`, `level=WARN msg=careful component=lego`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	buf.Reset()
	setLegoLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	legolog.Info("hidden at info level")
	if buf.Len() != 0 {
		t.Errorf("lego info line shown at info level: %q", buf.String())
	}
}
