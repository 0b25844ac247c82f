"""Replay a book on Spark: the events Parquet in, one projection per loan out (Parquet).

    spark-submit --master spark://HOST:PORT --files target/release/arrears \
        scale/spark_replay.py --events events.parquet --as-of 2024-12-31 --out projections/

The events file is what `arrears export --events --format parquet` writes (one row per stored
event, envelope included, and the event's exact JSON in `json`). The job:

1. reads `loan_id`, `seq` and `json` (column pruning: the typed body columns are not read);
2. hash-partitions the rows by `loan_id` and sorts each partition by (`loan_id`, `seq`), so every
   loan's events are together, in order, and the loans ascend — what `arrears project` streams;
3. pipes each partition through `arrears project --as-of D --jobs 1` (the binary shipped with
   `--files`, one process per partition, one core per task), which re-checks every loan's hash
   chain and prints the SPEC §7 line of each loan, exactly as `arrears replay` would;
4. writes (`loan_id`, `projection`) rows as Parquet. `projection` is the §7 JSON line, byte for
   byte; `scale/spark.sh` compares it with a local `arrears replay`.

The projection logic is not re-implemented in Python: Spark only moves bytes and schedules.
"""

import argparse
import os
import subprocess
import sys
import threading

from pyspark import SparkFiles
from pyspark.sql import SparkSession
from pyspark.sql.types import StringType, StructField, StructType


def project_partition(as_of, binary):
    """A mapPartitions function: one `arrears project` process per partition."""

    def run(rows):
        exe = binary if os.path.isabs(binary) else SparkFiles.get(binary)
        if not os.access(exe, os.X_OK):
            os.chmod(exe, 0o755)
        proc = subprocess.Popen(
            [exe, "project", "--as-of", as_of, "--jobs", "1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=1 << 20,
        )
        failed = []

        def feed():
            try:
                out = proc.stdin
                for json_line in rows:
                    out.write(json_line.encode("utf-8"))
                    out.write(b"\n")
                out.close()
            except BaseException as e:  # reported below, once the process has ended
                failed.append(e)
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        errors = []
        drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()))
        feeder = threading.Thread(target=feed)
        drain.start()
        feeder.start()
        for line in proc.stdout:
            text = line.rstrip(b"\n").decode("utf-8")
            # The §7 line starts {"loan_id":"<36 characters>"
            yield (text[12:48], text)
        feeder.join()
        code = proc.wait()
        drain.join()
        stderr = b"".join(errors).decode("utf-8", "replace").strip()
        if code != 0:
            # The message names the line, loan and seq (exit 2) or the I/O failure (exit 1).
            raise RuntimeError(f"arrears project exited {code}: {stderr}")
        if failed:
            # The process ended well but did not take all of its input (or feeding it failed).
            raise RuntimeError(f"feeding arrears project failed: {failed[0]!r}")

    return run


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", required=True, help="the events Parquet file or directory")
    p.add_argument("--as-of", required=True, help="business date YYYY-MM-DD")
    p.add_argument("--out", required=True, help="output directory (Parquet)")
    p.add_argument(
        "--arrears",
        default="arrears",
        help="the binary: a name shipped with spark-submit --files, or an absolute path present "
        "on every worker",
    )
    p.add_argument(
        "--partitions",
        type=int,
        default=0,
        help="loan partitions (default: 4 per core of the cluster; spark.sh passes 8)",
    )
    args = p.parse_args(argv)

    spark = SparkSession.builder.appName("arrears-replay").getOrCreate()
    sc = spark.sparkContext
    partitions = args.partitions or 4 * sc.defaultParallelism
    events = spark.read.parquet(args.events).select("loan_id", "seq", "json")
    ordered = events.repartition(partitions, "loan_id").sortWithinPartitions("loan_id", "seq")
    projected = ordered.select("json").rdd.map(lambda r: r[0]).mapPartitions(
        project_partition(args.as_of, args.arrears)
    )
    schema = StructType(
        [
            StructField("loan_id", StringType(), False),
            StructField("projection", StringType(), False),
        ]
    )
    spark.createDataFrame(projected, schema).write.mode("overwrite").parquet(args.out)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
