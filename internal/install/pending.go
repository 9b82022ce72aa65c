package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/wire"
)

// An install in progress is recorded in live/.<name>.pending before the
// live link is switched, and the record is removed once the new version
// is tested, reloaded and verified, or rolled back. A record found by a
// later run (under the lock) means a run was killed half-way: the service
// may still serve the previous certificate, or may never have had its
// config tested. That run is finished (test, reload, verify) or rolled
// back before anything else is done for the certificate.

// pending is the record of an install in progress.
type pending struct {
	Cert string `json:"cert"`
	// Previous is the target live/<name> had before ("" for none),
	// PreviousID its bundle id.
	Previous   string    `json:"previous"`
	PreviousID string    `json:"previous_id"`
	ID         string    `json:"id"` // the bundle being installed
	Started    time.Time `json:"started"`
}

func (in *Installer) pendingPath(name string) string {
	return filepath.Join(in.liveDir(), "."+name+".pending")
}

// isPendingTemp reports whether a live/ entry is the temporary file of an
// interrupted pending write.
func isPendingTemp(entry string) bool {
	return strings.HasPrefix(entry, ".") && strings.Contains(entry, ".pending.tmp-")
}

// writePending records durably (file and directory synced) that name is
// being switched from prev to id.
func (in *Installer) writePending(name string, prev *installed, id string) error {
	p := pending{Cert: name, ID: id, Started: in.now().UTC()}
	if prev != nil {
		p.Previous, p.PreviousID = prev.Target, prev.ID
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(in.pendingPath(name), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("record install in progress: %w", err)
	}
	return nil
}

// clearPending removes the record of name's install in progress.
func (in *Installer) clearPending(name string) error {
	if err := os.Remove(in.pendingPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove install record: %w", err)
	}
	// No sync: a record that a crash brings back names the version that
	// is live, and the next run finishes that install again (test,
	// reload, TLS check), which changes nothing.
	return nil
}

// readPending returns the record of name's interrupted install, nil when
// there is none.
func (in *Installer) readPending(name string) (*pending, error) {
	path := in.pendingPath(name)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read install record: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > 4096 {
		return nil, fmt.Errorf("install record %s is not a small regular file: remove it and check live/%s", path, name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read install record: %w", err)
	}
	var p pending
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("install record %s: %w", path, err)
	}
	switch {
	case p.Cert != name:
		return nil, fmt.Errorf("install record %s is for %q", path, p.Cert)
	case !wire.ValidID(p.ID):
		return nil, fmt.Errorf("install record %s: bad bundle id %q", path, p.ID)
	}
	return &p, nil
}

// recover deals with a record of an interrupted install of a.cert: when
// the live link points at the new version, the install is finished (test,
// reload, verify) or, failing that, rolled back; when it still (or again)
// points at the previous version, the service is reloaded so that it
// serves what live says, and the previous certificate is verified. It
// returns the id it finished installing ("" for none); an error means the
// node is in an unknown state and nothing more is done for the
// certificate (the record stays, so the next run tries again).
func (a *attempt) recover(p *pending) (string, error) {
	in, c, name := a.in, a.cert, a.cert.Name
	l := in.log().With("cert", name, "id", p.ID, "previous", p.PreviousID)
	var prev *installed
	if p.Previous != "" {
		prev = in.installedAt(name, p.Previous)
	}
	cur := a.cur
	switch {
	case cur != nil && cur.ID == p.ID:
		l.Warn("an interrupted install switched the live link; finishing it")
		err := in.checkVersion(cur.Dir, p.ID)
		if err == nil {
			err = a.finishSwitched(cur)
		}
		if err == nil {
			l.Info("interrupted install finished")
			return p.ID, in.clearPending(name)
		}
		l.Warn("interrupted install failed; rolling back", "error", err)
		if rerr := in.rollback(a.ctx, c, prev, p.ID, prev != nil); rerr != nil {
			return "", fmt.Errorf("finish interrupted install of %s: %w", p.ID, errors.Join(err, rerr))
		}
		return "", in.clearPending(name)
	case cur == nil && p.Previous == "" || cur != nil && cur.Target == p.Previous:
		l.Warn("an install was interrupted around the live link switch; restoring the previous certificate")
		// The service may have loaded the new files before a rollback
		// was cut short: reload and check what it serves.
		if err := in.rollback(a.ctx, c, prev, p.ID, prev != nil); err != nil {
			return "", fmt.Errorf("restore after interrupted install of %s: %w", p.ID, err)
		}
		return "", in.clearPending(name)
	default:
		l.Warn("live link changed since an interrupted install; leaving it", "live", cur.Target)
		return "", in.clearPending(name)
	}
}

// finishSwitched brings up the version now live, as a normal install
// does after the switch: config test, reload, TLS check.
func (a *attempt) finishSwitched(cur *installed) error {
	if cur.Manifest == nil {
		return fmt.Errorf("version %s is unreadable", cur.ID)
	}
	_, err := a.in.bringUp(a.ctx, a.cert, cur.ID, cur.Manifest)
	return err
}
