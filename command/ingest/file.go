package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// DefaultPollInterval is how often SubmitFile asks for its job's progress.
const DefaultPollInterval = 250 * time.Millisecond

// ContentTypeOf returns the feed content type of a file name by its extension:
// .ndjson and .jsonl are NDJSON, .json a JSON array, .csv CSV (case-insensitive).
func ContentTypeOf(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ndjson", ".jsonl":
		return "application/x-ndjson", nil
	case ".json":
		return "application/json", nil
	case ".csv":
		return "text/csv", nil
	}
	return "", fmt.Errorf("%s: the extension must be .ndjson, .jsonl, .json or .csv: %w", path, ErrUnsupportedContentType)
}

// SubmitFile is `mediamesh ingest FILE`: it submits the file through svc (the
// same path as POST /v1/ingest, as actor), then waits until the job is done and
// returns it. progress (nil: none) shows a bar on the bytes read, then one on the
// items done. A job with failed items is not an error: the caller reports
// Job.Failed and Job.Errors. Waiting needs an ingest worker running somewhere (the
// ingest role of a server, or the caller's own); it ends with ctx.
//
// When the submission fails after its job was recorded, the job is still awaited
// (its items read before the failure are applied) and returned with the error.
func SubmitFile(ctx context.Context, svc *Service, path, actor string, progress io.Writer) (Job, error) {
	ct, err := ContentTypeOf(path)
	if err != nil {
		return Job{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Job{}, fmt.Errorf("open feed: %w", err)
	}
	defer f.Close()
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	if progress == nil {
		progress = io.Discard
	}
	bar := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("reading "+filepath.Base(path)),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }),
	)
	r := progressbar.NewReader(f, bar)
	id, subErr := svc.Submit(ctx, ct, &r, actor)
	_ = bar.Finish()
	if id == "" {
		return Job{}, fmt.Errorf("submit %s: %w", path, subErr)
	}
	job, err := WaitJob(ctx, svc, id, DefaultPollInterval, progress)
	if subErr != nil {
		return job, fmt.Errorf("submit %s (job %s): %w", path, id, subErr)
	}
	return job, err
}

// WaitJob polls a job until it is done (Job.Done) or ctx ends, showing a bar on the
// items done when progress is not nil. It returns the last state it saw.
func WaitJob(ctx context.Context, svc *Service, id string, every time.Duration, progress io.Writer) (Job, error) {
	if progress == nil {
		progress = io.Discard
	}
	var bar *progressbar.ProgressBar
	defer func() {
		if bar != nil {
			_ = bar.Exit()
			fmt.Fprintln(progress)
		}
	}()
	for {
		job, err := svc.GetJob(ctx, id)
		if err != nil && !errors.Is(err, ErrJobNotFound) {
			return job, fmt.Errorf("ingest job %s: %w", id, err)
		}
		if err == nil {
			if bar == nil {
				bar = progressbar.NewOptions(job.Total,
					progressbar.OptionSetWriter(progress),
					progressbar.OptionSetDescription("applying"),
					progressbar.OptionShowCount(),
					progressbar.OptionShowIts(),
					progressbar.OptionSetItsString("items"),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionSetRenderBlankState(true),
				)
			}
			if bar.GetMax() != job.Total {
				bar.ChangeMax(job.Total)
			}
			_ = bar.Set(job.Succeeded + job.Failed)
			if job.Done() {
				return job, nil
			}
		}
		select {
		case <-ctx.Done():
			return job, fmt.Errorf("wait for ingest job %s: %w", id, ctx.Err())
		case <-time.After(every):
		}
	}
}
