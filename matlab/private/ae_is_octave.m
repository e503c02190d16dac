function tf = ae_is_octave()
%AE_IS_OCTAVE True when running under GNU Octave rather than MATLAB.
tf = exist('OCTAVE_VERSION', 'builtin') ~= 0;
end
