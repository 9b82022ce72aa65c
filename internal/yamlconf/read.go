package yamlconf

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/certpush/certpush/internal/bounded"
)

// ReadFile reads the configuration (or host-list) file name, refusing
// anything but a regular file (a FIFO would block, a device never end)
// and a file larger than limit bytes. The errors name the file; a
// missing file is an *fs.PathError, so errors.Is(err, fs.ErrNotExist)
// holds.
func ReadFile(name string, limit int64) ([]byte, error) {
	// Stat by name before opening: a FIFO is never opened (that would
	// block), and a missing file is the error of Stat.
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, tooLarge(name, limit)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file may have been replaced or have grown since Stat.
	data, err := bounded.ReadRegular(f, name, int(min(limit, math.MaxInt)))
	if _, ok := errors.AsType[*bounded.LimitError](err); ok {
		return nil, tooLarge(name, limit)
	}
	return data, err
}

func tooLarge(name string, limit int64) error {
	if limit >= 1<<20 && limit%(1<<20) == 0 {
		return fmt.Errorf("%s is larger than the limit of %d MiB", name, limit>>20)
	}
	return fmt.Errorf("%s is larger than the limit of %d bytes", name, limit)
}
