package hooks

import (
	"os/exec"
	"strings"
	"testing"
)

// TestForcedCommandAsShell runs certnode-forced-command the way sshd runs
// an account's login shell (`SHELL -c LINE`, SSH_ORIGINAL_COMMAND set only
// for a forced command). certnode is /bin/echo here, run without sudo, so
// the output is the argv it would get.
func TestForcedCommandAsShell(t *testing.T) {
	const id = "0123456789abcdef"
	forced := "/usr/share/certnode/certnode-forced-command --no-sudo --certnode /bin/echo --config /etc/x.yaml"
	install := "certnode install --json --id " + id + " example.com"
	testCases := []struct {
		desc     string
		args     []string
		original *string // SSH_ORIGINAL_COMMAND; nil = unset
		want     string  // stdout; "" = refused
	}{
		{"forced command with root's options", []string{"-c", forced}, &install, "--config /etc/x.yaml install --json --id " + id + " example.com\n"},
		{"forced command, refused client command", []string{"-c", forced}, ptr("id"), ""},
		{"forced command, interactive login", []string{"-c", forced}, nil, ""},
		{"forced command, shell", []string{"-c", forced}, ptr("/bin/sh -c id"), ""},
		{"client names the script to pass options", []string{"-c", forced + " --sftp-server /bin/sh"}, nil, ""},
		{"client command without forced command", []string{"-c", "id"}, nil, ""},
		{"client shell without forced command", []string{"-c", "/bin/sh"}, nil, ""},
		{"other forced command", []string{"-c", "/bin/sh"}, &install, ""},
		{"more than one argument", []string{"-c", "certnode", "install"}, nil, ""},
		{"login without a command", nil, nil, ""},
		{"sftp subsystem through the forced command", []string{"-c", "/usr/share/certnode/certnode-forced-command --sftp-server /bin/echo"}, ptr("/usr/lib/openssh/sftp-server"), "\n"},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", append([]string{"certnode-forced-command"}, tc.args...)...)
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			if tc.original != nil {
				cmd.Env = append(cmd.Env, "SSH_ORIGINAL_COMMAND="+*tc.original)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if tc.want == "" {
				if err == nil || !strings.Contains(stderr.String(), "refused") {
					t.Errorf("not refused: %v, stdout %q, stderr %q", err, out, stderr.String())
				}
				return
			}
			if err != nil || string(out) != tc.want {
				t.Errorf("got %v, stdout %q (stderr %q), want %q", err, out, stderr.String(), tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }
