function ae_delete_if_there(file)
%AE_DELETE_IF_THERE Delete FILE if it exists (for onCleanup of temporary files).
if exist(file, 'file') == 2
    delete(file);
end
end
