from lib.common import inputs, outputs, record

record("publish")
(outputs() / "published.txt").write_text("published: " + (inputs() / "summarise" / "summary.txt").read_text())
