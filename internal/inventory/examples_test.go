package inventory_test

import (
	"testing"

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
