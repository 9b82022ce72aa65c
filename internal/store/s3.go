package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3 is a store in an S3 bucket (AWS S3 or an S3-compatible server),
// under a key prefix. It uses aws-sdk-go-v2's s3 client: it is already
// in certpush's module graph (lego's route53 provider), it sends
// PutObject's If-None-Match / If-Match and GetObject's If-None-Match, and
// it reads credentials from the standard AWS chain.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in "/"
	url    string
}

var _ Store = (*S3)(nil)

func openS3(ctx context.Context, cfg *Config) (*S3, error) {
	rest := strings.TrimPrefix(cfg.URL, "s3://")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if len(bucket) < 3 {
		return nil, fmt.Errorf("store %s: no bucket name (want s3://bucket/prefix)", cfg.URL)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := CheckKey(prefix); err != nil {
			return nil, fmt.Errorf("store %s: prefix: %w", cfg.URL, err)
		}
		prefix += "/"
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("store %s: aws config: %w", cfg.URL, err)
	}
	if ac.Region == "" {
		ac.Region = "us-east-1"
	}
	client := s3.NewFromConfig(ac, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Checksums only where S3 requires them: S3-compatible servers
		// differ in the trailing checksums they accept.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &S3{client: client, bucket: bucket, prefix: prefix, url: cfg.URL}, nil
}

func (s *S3) String() string { return s.url }

func status(err error) int {
	if re, ok := errors.AsType[*awshttp.ResponseError](err); ok {
		return re.HTTPStatusCode()
	}
	return 0
}

// mapErr turns S3's answers into the package's errors.
func (s *S3) mapErr(key string, err error) error {
	switch status(err) {
	case http.StatusNotModified:
		return ErrNotModified
	case http.StatusNotFound:
		return notExist(key)
	case http.StatusPreconditionFailed, http.StatusConflict:
		return fmt.Errorf("object %s: %w", key, ErrPrecondition)
	}
	if _, ok := errors.AsType[*types.NoSuchKey](err); ok {
		return notExist(key)
	}
	return fmt.Errorf("store %s: object %s: %w", s.url, key, err)
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key, ifNoneMatch string, limit int64) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)}
	if ifNoneMatch != "" {
		in.IfNoneMatch = aws.String(`"` + unquote(ifNoneMatch) + `"`)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		return nil, s.mapErr(key, err)
	}
	defer out.Body.Close()
	if out.ContentLength != nil && *out.ContentLength > limit {
		return nil, fmt.Errorf("object %s: %w (%d bytes, limit %d)", key, ErrTooLarge, *out.ContentLength, limit)
	}
	data, err := io.ReadAll(io.LimitReader(out.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("store %s: read %s: %w", s.url, key, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("object %s: %w", key, ErrTooLarge)
	}
	return &Object{Data: data, ETag: unquote(aws.ToString(out.ETag))}, nil
}

func (s *S3) put(ctx context.Context, key string, data []byte, ifNoneMatch, ifMatch string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	in := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.prefix + key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	}
	if ifNoneMatch != "" {
		in.IfNoneMatch = aws.String(ifNoneMatch)
	}
	if ifMatch != "" {
		in.IfMatch = aws.String(`"` + unquote(ifMatch) + `"`)
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return "", s.mapErr(key, err)
	}
	return unquote(aws.ToString(out.ETag)), nil
}

// Create implements Store.
func (s *S3) Create(ctx context.Context, key string, data []byte) (string, error) {
	return s.put(ctx, key, data, "*", "")
}

// Replace implements Store.
func (s *S3) Replace(ctx context.Context, key string, data []byte, etag string) (string, error) {
	if etag == "" {
		return "", fmt.Errorf("object %s: replace needs an etag", key)
	}
	return s.put(ctx, key, data, "", etag)
}

// Put implements Store.
func (s *S3) Put(ctx context.Context, key string, data []byte) (string, error) {
	return s.put(ctx, key, data, "", "")
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("store %s: list %s: %w", s.url, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, strings.TrimPrefix(aws.ToString(o.Key), s.prefix))
		}
	}
	sort.Strings(keys)
	return keys, nil
}
