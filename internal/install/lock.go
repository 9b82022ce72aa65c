package install

import (
	"context"

	"github.com/certpush/certpush/internal/flock"
)

// lock takes the node's lock, waiting for another certnode as long as ctx
// allows. The returned function releases it.
func (in *Installer) lock(ctx context.Context) (func(), error) {
	l, err := flock.Acquire(ctx, in.Config.Lock, 0o755, func(pid int) {
		in.log().Info("waiting for another certnode to finish", "lock", in.Config.Lock, "pid", pid)
	})
	if err != nil {
		return nil, err
	}
	return l.Release, nil
}
