function root = ae_repo_root()
%AE_REPO_ROOT Root of the audio-embeddings repository (the folder holding matlab/ and python/).
%   This file lives in <root>/matlab/private/, so the root is three levels up.
here = mfilename('fullpath');          % <root>/matlab/private/ae_repo_root
root = fileparts(fileparts(fileparts(here)));
end
