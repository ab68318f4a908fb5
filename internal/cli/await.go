package cli

import (
	"context"
	"strconv"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/pkg/client"
)

const awaitHelp = `Usage: kafkasend await [options] JOBID

Waits for the answer to a job sent with 'kafkasend send --async' and prints
it like 'kafkasend send' does. Use the same --reply-topic and
--reply-partition as the send. The reply partition is searched from
--resume-offset (default: the oldest offset Kafka still has), then followed
until the answer arrives or --timeout passes.

Examples:
  id=$(kafkasend send --async --timeout 20m -d @report.json /v1/reports)
  echo "$id" > report.job                 # keep the ID; the process may end
  kafkasend await --timeout 20m "$(cat report.job)"
  kafkasend await -i --reply-partition 3 01JD8ZQ7XH2Y6M0W4B9V3K5T1R

Exit codes: as for 'kafkasend send'.
`

func runAwait(ctx context.Context, args []string, sio IO) error {
	fs := newFlagSet("await", awaitHelp, sio.Stderr)
	var k kafkaFlags
	k.register(fs, sio.Getenv)
	include := fs.Bool("i", false, "print the status line and headers before the body")
	fail := fs.Bool("fail", false, "exit 22 without printing the body when the HTTP status is 400 or more")
	resume := fs.Int64("resume-offset", int64(envInt(sio.Getenv, "KAFKASEND_RESUME_OFFSET", -1)),
		"reply-partition offset to search from; -1 = the oldest (env KAFKASEND_RESUME_OFFSET)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return usageOrHelp(err)
	}
	if len(pos) != 1 {
		return usageError{"await needs exactly one JOBID (see kafkasend await --help)"}
	}
	cfg, err := k.config()
	if err != nil {
		return err
	}
	switch {
	case *resume == -1:
		cfg.ResumeOffset = sarama.OffsetOldest
	case *resume >= 0:
		cfg.ResumeOffset = *resume
	default:
		return usageError{"--resume-offset must be -1 or an offset, not " + strconv.FormatInt(*resume, 10)}
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	resp, err := c.Await(ctx, pos[0])
	if err != nil {
		return err
	}
	return printResponse(sio, resp, *include, *fail)
}
