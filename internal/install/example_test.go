package install_test

import (
	"testing"

	"github.com/certpush/certpush/internal/install"
)

// The example certnode config shipped in the repository must stay valid.
func TestShippedExampleConfig(t *testing.T) {
	cfg, err := install.LoadConfig("../../inventory/certnode.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.TrustedKeys) != 1 || cfg.Certs["example.com"] == nil {
		t.Errorf("config = %+v", cfg)
	}
}
