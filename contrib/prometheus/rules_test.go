package prometheus

import (
	"os/exec"
	"testing"

	"github.com/certpush/certpush/internal/testfleet"
)

// TestRules checks the rules file and runs its unit tests
// (certpush.rules.test.yml) with the real promtool.
func TestRules(t *testing.T) {
	testfleet.Require(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "certpush.rules.yml"},
		{"test", "rules", "certpush.rules.test.yml"},
	} {
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
