-- GET as a registered worker does: naming itself on every fetch.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
request = function()
  return wrk.format("GET", nil, {["X-presque-workerid"] = "bench-worker"})
end
