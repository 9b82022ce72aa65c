package testfleet

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/certpush/certpush/internal/flock"
)

// FleetUser is the account the fleet's sshd lets in and nginx runs as, when
// the fleet is started as root.
const FleetUser = "certpush-fleet"

// account is the fleet user.
type account struct {
	name     string
	uid, gid int
}

// cred returns the credential to start processes with, nil when the fleet
// user is the current user.
func (a account) cred() *cred {
	if a.uid == os.Getuid() && a.gid == os.Getgid() {
		return nil
	}
	return &cred{uid: uint32(a.uid), gid: uint32(a.gid)}
}

// chown gives path to the fleet user (a no-op when it is the current user).
func (a account) chown(path string) error {
	if a.uid == os.Getuid() {
		return nil
	}
	if err := os.Lchown(path, a.uid, a.gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

// chownTree gives a whole tree to the fleet user.
func (a account) chownTree(root string) error {
	if a.uid == os.Getuid() {
		return nil
	}
	return filepath.WalkDir(root, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return a.chown(path)
	})
}

// fleetAccount returns the account the fleet runs its users' side as: as
// root, the system account FleetUser (created when missing); otherwise the
// current user.
func fleetAccount(ctx context.Context, log *slog.Logger) (account, error) {
	if os.Getuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return account{}, fmt.Errorf("current user: %w", err)
		}
		return fromUser(u)
	}
	u, err := user.Lookup(FleetUser)
	if err == nil {
		return fromUser(u)
	}
	// useradd run by two processes at once may create the user twice, the
	// second replacing the first: fleets starting together take turns.
	lock, err := flock.Acquire(ctx, filepath.Join(os.TempDir(), ".certpush-fleet-useradd.lock"), 0o755, nil)
	if err != nil {
		return account{}, fmt.Errorf("create user %s: %w", FleetUser, err)
	}
	defer lock.Release()
	if u, err = user.Lookup(FleetUser); err == nil {
		return fromUser(u)
	}
	log.Info("creating fleet user", "user", FleetUser)
	// The home directory is "/": it exists (sshd complains on every command
	// when it does not) and holds no shell start-up files. The password
	// "*" is no password, but not a locked account, which sshd refuses
	// without PAM.
	cmd := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home",
		"--home-dir", "/", "--shell", "/bin/sh", "--password", "*", FleetUser)
	out, cerr := cmd.CombinedOutput()
	// A failure is fine if the user exists now, created by someone else.
	if u, err = user.Lookup(FleetUser); err != nil {
		if cerr != nil {
			return account{}, fmt.Errorf("create user %s: %w: %s", FleetUser, cerr, strings.TrimSpace(string(out)))
		}
		return account{}, fmt.Errorf("create user %s: %w", FleetUser, err)
	}
	return fromUser(u)
}

func fromUser(u *user.User) (account, error) {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return account{}, fmt.Errorf("user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return account{}, fmt.Errorf("user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	return account{name: u.Username, uid: uid, gid: gid}, nil
}

// makeTraversable makes sure the fleet user can reach dir: each ancestor
// that others cannot enter gets the execute bit for others, but only below
// the system's temporary directory; elsewhere that is an error.
func makeTraversable(dir string, a account, log *slog.Logger) error {
	if a.uid == os.Getuid() {
		return nil
	}
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		tmp = filepath.Clean(os.TempDir())
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			inTmp := strings.HasPrefix(d, tmp+string(filepath.Separator))
			if !inTmp {
				return fmt.Errorf("directory %s is not searchable by %s: use a fleet directory under %s", d, a.name, tmp)
			}
			log.Debug("making directory searchable for the fleet user", "dir", d)
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("chmod %s: %w", d, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
