package hooks

import (
	"os"
	"strings"
	"testing"
)

// TestPaths: the rule and the forced command follow the paths the build
// was linked with (make install PREFIX=..., the packages), and default to
// /usr/local.
func TestPaths(t *testing.T) {
	testCases := []struct {
		desc, bin, forced string
		wantBin, wantRule string
	}{
		{"default", "/usr/local/bin", "/usr/local/lib/certpush/certnode-forced-command", "/usr/local/bin/certnode", "NOPASSWD: /usr/local/bin/certnode ^--config"},
		{"package", "/usr/bin", "/usr/share/certnode/certnode-forced-command", "/usr/bin/certnode", "NOPASSWD: /usr/bin/certnode ^--config"},
		{"prefix with slash", "/opt/cp/bin/", "/opt/cp/lib/certpush/certnode-forced-command", "/opt/cp/bin/certnode", "NOPASSWD: /opt/cp/bin/certnode ^--config"},
	}
	defer func(b, f string) { binDir, forcedCommand = b, f }(binDir, forcedCommand)
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			binDir, forcedCommand = tc.bin, tc.forced
			if got := CertnodeBinary(); got != tc.wantBin {
				t.Errorf("CertnodeBinary() = %q, want %q", got, tc.wantBin)
			}
			if got := ForcedCommand(); got != tc.forced {
				t.Errorf("ForcedCommand() = %q, want %q", got, tc.forced)
			}
			rule := SudoersRule()
			if !strings.Contains(rule, tc.wantRule) {
				t.Errorf("SudoersRule() = %q, want it to contain %q", rule, tc.wantRule)
			}
			if tc.bin != "/usr/local/bin" && strings.Contains(rule, "/usr/local/") {
				t.Errorf("SudoersRule() still names /usr/local: %q", rule)
			}
			if n := strings.Count(rule, tc.wantBin); n != 2 {
				t.Errorf("SudoersRule() names %s %d times, want 2 (Defaults and the rule): %q", tc.wantBin, n, rule)
			}
		})
	}
}

// TestSudoersTemplatesMatch: the Ansible role's and the Puppet module's
// sudo rules allow exactly the arguments of the shipped sudoers.certnode
// after the config, so that a node set up either way accepts what
// certpush runs (install --stdin included).
func TestSudoersTemplatesMatch(t *testing.T) {
	args := func(path string) string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if i := strings.Index(l, " install --json"); i >= 0 && !strings.HasPrefix(l, "#") {
				return l[i:]
			}
		}
		t.Fatalf("%s: no install rule", path)
		return ""
	}
	want := args("sudoers.certnode")
	for _, p := range []string{
		"../contrib/ansible/roles/certnode/templates/sudoers.j2",
		"../contrib/puppet/certnode/templates/sudoers.epp",
	} {
		if got := args(p); got != want {
			t.Errorf("%s allows %q, sudoers.certnode %q", p, got, want)
		}
	}
}
