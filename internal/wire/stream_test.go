package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var streamNames = []string{"manifest.json", "cert.pem", "privkey.pem"}

func streamFiles() []File {
	return []File{
		{"manifest.json", []byte(`{"id":"x"}`)},
		{"cert.pem", []byte("CERT\nwith newlines\n")},
		{"privkey.pem", []byte{}},
	}
}

func TestStreamRoundTrip(t *testing.T) {
	enc := EncodeStream(streamFiles())
	got, err := DecodeStream(bytes.NewReader(enc), streamNames, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range streamFiles() {
		if !bytes.Equal(got[f.Name], f.Data) || got[f.Name] == nil {
			t.Errorf("%s: got %q, want %q", f.Name, got[f.Name], f.Data)
		}
	}
	if len(got) != len(streamNames) {
		t.Errorf("got %d files, want %d", len(got), len(streamNames))
	}
}

func TestStreamRefused(t *testing.T) {
	good := string(EncodeStream(streamFiles()))
	reorder := EncodeStream([]File{streamFiles()[1], streamFiles()[0], streamFiles()[2]})
	missing := EncodeStream(streamFiles()[:2])
	twice := EncodeStream(append(streamFiles(), streamFiles()[1]))
	unknown := EncodeStream(append(streamFiles()[:1], File{"../etc/passwd", []byte("x")}))
	big := EncodeStream([]File{{"manifest.json", bytes.Repeat([]byte("a"), 65)}})
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "ended before its end line"},
		{"other header", "certpush-bundle 2\n", `not "certpush-bundle 1"`},
		{"no size", "certpush-bundle 1\nmanifest.json\n", "is not \"<file> <size>\""},
		{"negative size", "certpush-bundle 1\nmanifest.json -1\n", "is not \"<file> <size>\""},
		{"manifest not first", string(reorder), "manifest.json must come first"},
		{"missing file", string(missing), "privkey.pem missing"},
		{"sent twice", string(twice), "cert.pem sent twice"},
		{"unknown file", string(unknown), `unexpected file "../etc/passwd"`},
		{"too big", string(big), "larger than the 64 allowed"},
		{"short data", good[:40], "the stream ended"},
		{"no end line", strings.TrimSuffix(good, "end\n"), "ended before its end line"},
		{"trailing data", good + "x", "data after the end line"},
		{"long line", "certpush-bundle 1\n" + strings.Repeat("a", 200) + " 1\n", "longer than 128 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeStream(strings.NewReader(tc.in), streamNames, 64)
			if err == nil || !errors.Is(err, ErrStream) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrStream containing %q", err, tc.want)
			}
		})
	}
}

func FuzzDecodeStream(f *testing.F) {
	f.Add(EncodeStream(streamFiles()))
	f.Add([]byte("certpush-bundle 1\nmanifest.json 3\nabc"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := DecodeStream(bytes.NewReader(in), streamNames, 64)
		if err != nil {
			return
		}
		// Whatever decodes encodes back to the same bytes when in order.
		var files []File
		for _, n := range streamNames {
			files = append(files, File{n, got[n]})
		}
		if re := EncodeStream(files); len(re) > len(in) {
			t.Fatalf("re-encoded %d bytes from %d", len(re), len(in))
		}
	})
}
