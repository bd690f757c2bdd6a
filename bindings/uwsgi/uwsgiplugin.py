# uWSGI plugin build description for `uwsgi --build-plugin bindings/uwsgi` (see build.sh).
# uwsgiconfig.py exec()s this file without __file__, so the locations of rlog.h and
# librlog.so come from the environment (build.sh sets them from the source tree).
import os

NAME = 'rlog'

_inc = os.environ.get('RLOG_INCLUDE_DIR', '/usr/local/include')
_lib = os.environ.get('RLOG_LIB_DIR', '/usr/local/lib')

CFLAGS = ['-I' + _inc, '-std=gnu99', '-Wall', '-Wextra', '-Wno-unused-parameter']
LDFLAGS = ['-L' + _lib, '-Wl,-rpath,' + _lib]
LIBS = ['-lrlog']
GCC_LIST = ['rlog_plugin']
