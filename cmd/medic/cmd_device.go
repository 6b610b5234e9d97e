package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"

	"github.com/alecthomas/kingpin/v2"
)

func init() {
	register("device", "Operator actions on a pool's device that the agent stopped pushing to (blocked): retry pushes its held config again now; skip moves that config to the pool's dead letters and delivers the next; show prints the device's state.", setupDevice)
}

func setupDevice(cmd *kingpin.CmdClause) action {
	c := bridgeClientFlags(cmd)
	var act, pool, device, reason, by string
	cmd.Arg("ACTION", "retry, skip or show.").Required().EnumVar(&act, "retry", "skip", "show")
	cmd.Arg("POOL", "The pool.").Required().StringVar(&pool)
	cmd.Arg("DEVICE", "The device ID.").Required().StringVar(&device)
	cmd.Flag("reason", "Why (required for retry and skip): recorded with the action, and in the dead letter of a skip.").StringVar(&reason)
	cmd.Flag("by", "Who acts, recorded unless the bridge authenticates you as a user.").Default(defaultBy()).StringVar(&by)
	return func(ctx context.Context, _ *slog.Logger) error {
		return runDevice(ctx, c, act, pool, device, reason, by, os.Stdout)
	}
}

func runDevice(ctx context.Context, c *bridgeClient, act, pool, device, reason, by string, stdout io.Writer) error {
	path := "/api/v1/pools/" + url.PathEscape(pool) + "/devices/" + url.PathEscape(device)
	if act == "show" {
		code, out, err := c.do(ctx, http.MethodGet, path, nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return c.refusal(code, out)
		}
		fmt.Fprintf(stdout, "%s/%s: %s, applied seq %v, next %v, %v pending", pool, device, str(out["state"]), out["applied_seq"], out["next_seq"], out["pending"])
		if str(out["state"]) != "ok" {
			fmt.Fprintf(stdout, "; %v failed attempts, last answer %v %s since %s", out["attempts"], out["last_status"], str(out["last_error"]), timeText(str(out["since"])))
		}
		fmt.Fprintln(stdout)
		return nil
	}
	if reason == "" {
		return errors.New("--reason is required: the audit record says why")
	}
	code, out, err := c.do(ctx, http.MethodPost, path+"/"+act, map[string]string{"reason": reason, "by": by})
	if err != nil {
		return err
	}
	switch code {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusConflict, http.StatusBadRequest:
		if msg := str(out["error"]); msg != "" {
			return errors.New(msg)
		}
		return c.refusal(code, out)
	default:
		return c.refusal(code, out)
	}
	if act == "skip" {
		fmt.Fprintf(stdout, "skipped config %v of %s/%s (by %s): dead letter %s; its next config is delivered now\n", out["seq"], pool, device, str(out["by"]), str(out["dead_letter"]))
	} else {
		fmt.Fprintf(stdout, "unblocked %s/%s (by %s): config %v is pushed again now\n", pool, device, str(out["by"]), out["seq"])
	}
	return nil
}
