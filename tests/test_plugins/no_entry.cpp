// Test library that is not a plugin: no mmr_plugin_entry symbol.
extern "C" int mmr_not_a_plugin() { return 42; }
