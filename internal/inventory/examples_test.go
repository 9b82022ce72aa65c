package inventory_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/inventory"
)

// The example inventory shipped in the repository must stay valid.
func TestShippedExample(t *testing.T) {
	cfg, err := inventory.Load("../../inventory/certpush.yaml")
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := cfg.HostsFor("example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 8 || hosts[0].Name != "beta-01" {
		var names []string
		for _, h := range hosts {
			names = append(names, h.Name)
		}
		t.Errorf("example.com hosts = %v, want 8 with beta-01 first", names)
	}
}

// The two load-balancer runbooks (docs/load-balancers.md) must stay
// valid, with the waves and the threshold they document.
func TestRunbookExamples(t *testing.T) {
	cfg, err := inventory.Load("../../inventory/lb-cdn.yaml")
	if err != nil {
		t.Fatal(err)
	}
	waves, err := cfg.Waves("example.com")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range waves {
		got = append(got, strings.Join(w.Names(), ","))
	}
	want := []string{"irc-elb", "elb-prod,cloudfront", "beta-01", "ws-01", "web-01,web-02,ws-02"}
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Errorf("lb-cdn waves %q, want %q", got, want)
	}
	if c := cfg.Certs["example.com"]; c.Pause != 10*time.Minute {
		t.Errorf("pause %v", c.Pause)
	}
	checkTargets(t, cfg, "example.com")
	hosts, _ := cfg.HostsFor("example.com")
	for _, h := range hosts {
		if h.IsExec() && h.Name == "cloudfront" && len(h.Verify) != 0 {
			t.Errorf("cloudfront got verify endpoints %v from verify_ports", h.Verify)
		}
		if !h.IsExec() && len(h.Verify) != 1 {
			t.Errorf("%s: verify %v", h.Name, h.Verify)
		}
	}

	cfg, err = inventory.Load("../../inventory/slb-renew.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Certs["shop.example.cn"]
	if c.RenewBefore != 168*time.Hour || c.Challenge == nil {
		t.Errorf("slb-renew: renew_before %v, challenge %v", c.RenewBefore, c.Challenge)
	}
	checkTargets(t, cfg, "shop.example.cn")
}

// checkTargets checks that every exec target of cert runs a hook shipped
// in hooks/targets/.
func checkTargets(t *testing.T, cfg *inventory.Config, cert string) {
	t.Helper()
	hosts, err := cfg.HostsFor(cert)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range hosts {
		if !h.IsExec() {
			continue
		}
		n++
		if filepath.Base(filepath.Dir(h.Exec[0])) != "targets" {
			t.Errorf("%s runs %s, not a hook of hooks/targets", h.Name, h.Exec[0])
		}
		if fi, err := os.Stat(h.Exec[0]); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s: %s is not an executable (%v)", h.Name, h.Exec[0], err)
		}
	}
	if n == 0 {
		t.Errorf("%s has no exec targets", cert)
	}
}
