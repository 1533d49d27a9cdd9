// Exports the `llava` model plugin; the model itself lives in the mmr_llava library (tests link it directly).
#include "llava.h"

MMR_PLUGIN(Model, "llava", "0.1.0", mmr::llava::LlavaModel)
