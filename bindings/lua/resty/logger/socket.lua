-- resty.logger.socket: a drop-in for lua-resty-logger-socket backed by rlog. Code that does
-- `local logger = require "resty.logger.socket"` gets the same init / initted / log / flush with
-- the same return values and error strings; see resty/rlog.lua.
return require "resty.rlog"
